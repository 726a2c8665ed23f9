// Carbon-aware scheduling in the core round path: the [carbon] keys, the
// expected intensity a shift minimises, how long a round waits (slack, wait
// cap, minimum saving), selection with per-region floors and budgets (against
// the plain weighted sampler), eligibility by device policy, and the shares
// of participations by region and device class.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/streams.h"
#include "frugal/energy/ledger.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/carbon_schedule.h"
#include "frugal/round/planner.h"
#include "frugal/round/representation.h"
#include "frugal/round/selection.h"
#include "frugal/round/settings.h"

namespace frugal {
namespace {

// A region whose intensity is `night` except in UTC hours [from, to), where it is `day`.
RegionProfile Stepped(std::string id, double night, double day, int from, int to) {
  RegionProfile r;
  r.id = std::move(id);
  r.gco2e_per_kwh = night;
  std::array<double, 24> c{};
  for (int h = 0; h < 24; ++h) c[static_cast<size_t>(h)] = h >= from && h < to ? day : night;
  r.utc_hourly_gco2e_per_kwh = c;
  return r;
}

Result<RunSettings> Read(const std::string& text) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, "t.toml"));
  ConfigReader r(t);
  RunSettings s;
  FRUGAL_RETURN_IF_ERROR(ReadRunSettings(r, s));
  return s;
}

}  // namespace

TEST_SUITE("round") {
  TEST_CASE("the [carbon] keys are read with their defaults and checked") {
    auto s = Read("");
    REQUIRE(s.ok());
    CHECK(s->carbon.hourly == HourlyMode::kDerived);
    CHECK_FALSE(s->carbon.shifts());
    auto t = Read("[carbon]\nhourly = \"yearly\"\nshift_slack_h = 2.5\nregion_floor = 0.5\nrequire_unmetered = true\n");
    REQUIRE(t.ok());
    CHECK(t->carbon.hourly == HourlyMode::kYearly);
    CHECK(t->carbon.shift_slack_h == 2.5);
    CHECK(t->carbon.region_floor == 0.5);
    CHECK(t->carbon.require_unmetered);
    for (const char* bad : {"[carbon]\nday_of_year = 0\n", "[carbon]\nregion_floor = 1.5\n",
                            "[carbon]\nshift_slack_h = -1\n", "[carbon]\nhourly = \"hourly\"\n"}) {
      auto r = Read(bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("carbon.") != std::string::npos);
    }
  }

  TEST_CASE("expected intensity: the mean for uniform draws, the harmonic mean for carbon-weighted ones") {
    const RegionProfile a = Stepped("A", 100, 100, 0, 0), b = Stepped("B", 400, 400, 0, 0);
    const RegionCount mix[] = {{&a, 1}, {&b, 3}};
    CHECK(ExpectedIntensity(mix, SelectionPolicy::kUniform, 0) == doctest::Approx((100 + 3 * 400) / 4.0));
    CHECK(ExpectedIntensity(mix, SelectionPolicy::kCarbon, 0) == doctest::Approx(4 / (1 / 100.0 + 3 / 400.0)));
    CHECK(ExpectedIntensity({}, SelectionPolicy::kUniform, 0) == 0);
  }

  TEST_CASE("a round waits for its regions' cleaner hours, within the slack and the wait budget") {
    const RegionProfile a = Stepped("A", 500, 100, 3, 6), b = Stepped("B", 300, 300, 0, 0);
    const RegionCount mix[] = {{&a, 2}, {&b, 2}};
    CarbonSettings s;
    s.shift_slack_h = 6;
    s.shift_step_h = 1;
    s.shift_max_wait_ratio = 0.5;
    TimeShifter shift(s);
    CHECK(shift.Delay(mix, SelectionPolicy::kUniform, 0) == 0);  // no time run yet, so no wait budget
    shift.AddActive(10);
    CHECK(shift.Delay(mix, SelectionPolicy::kUniform, 0.0) == 3);  // the earliest cleanest start
    CHECK(shift.waited_hours() == 3);
    CHECK(shift.Delay(mix, SelectionPolicy::kUniform, 1.0) == 2);  // budget left 5 - 3 = 2: hour 3 still in reach
    CHECK(shift.Delay(mix, SelectionPolicy::kUniform, 0.0) == 0);  // budget spent
    // Already clean now: no wait. Without a cap, the slack alone bounds it.
    s.shift_max_wait_ratio = 0;
    TimeShifter free(s);
    CHECK(free.Delay(mix, SelectionPolicy::kUniform, 4.0) == 0);
    CHECK(free.Delay(mix, SelectionPolicy::kUniform, 20.0) == 0);  // 27 h is out of the 6 h slack
    CHECK(free.Delay(mix, SelectionPolicy::kUniform, 22.0) == 5);
    // A saving under shift_min_saving is not worth a wait.
    const RegionProfile c = Stepped("C", 100, 99, 3, 6);
    const RegionCount flat[] = {{&c, 1}};
    CHECK(free.Delay(flat, SelectionPolicy::kUniform, 0.0) == 0);
    s.shift_slack_h = 0;
    TimeShifter off(s);
    CHECK(off.Delay(mix, SelectionPolicy::kUniform, 0.0) == 0);
  }

  TEST_CASE("without floors or budgets the limited selection is the plain weighted sample") {
    std::vector<BudgetedCandidate> c;
    std::vector<uint32_t> ids;
    std::vector<double> w;
    for (uint32_t i = 0; i < 200; ++i) {
      const double weight = 1.0 + (i * 7919 % 13);
      c.push_back({i * 3 + 1, weight, i % 4, 1.0});
      ids.push_back(i * 3 + 1);
      w.push_back(weight);
    }
    for (uint64_t seed : {1ull, 2ull, 99ull}) {
      CHECK(SelectWithRegionLimits(c, 20, seed, 0, {}) == SelectClientsWeighted(ids, w, 20, seed));
    }
  }

  TEST_CASE("a region floor keeps a costly region in the round; a budget caps what a region spends") {
    std::vector<BudgetedCandidate> c;
    for (uint32_t i = 0; i < 100; ++i) c.push_back({i, i < 50 ? 1.0 : 1e-6, i < 50 ? 0u : 1u, 10.0});
    auto from_region1 = [](const std::vector<uint32_t>& sel) {
      return std::count_if(sel.begin(), sel.end(), [](uint32_t id) { return id >= 50; });
    };
    const auto plain = SelectWithRegionLimits(c, 10, 7, 0, {});
    CHECK(plain.size() == 10);
    CHECK(from_region1(plain) == 0);  // weights a million times smaller
    // Region 1 holds half the candidates: floor 0.5 x 10 slots x 0.5 = 2.5, rounded up.
    const auto floored = SelectWithRegionLimits(c, 10, 7, 0.5, {});
    CHECK(floored.size() == 10);
    CHECK(from_region1(floored) == 3);
    CHECK(std::is_sorted(floored.begin(), floored.end()));
    // Budgets: region 0 may spend 40 J (4 clients of 10 J), region 1 plenty.
    std::vector<double> left = {40.0, 1000.0};
    const auto budgeted = SelectWithRegionLimits(c, 10, 7, 0, left);
    CHECK(budgeted.size() == 10);
    CHECK(10 - from_region1(budgeted) == 4);
    CHECK(left[0] == doctest::Approx(0));
    CHECK(left[1] == doctest::Approx(1000 - 60));
    // Nothing fits: nobody is selected.
    std::vector<double> none = {5.0, 5.0};
    CHECK(SelectWithRegionLimits(c, 10, 7, 0, none).empty());
  }

  TEST_CASE("the planner leaves out metered and discharging clients when the policy asks") {
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    const DeviceProfile* phone = *p.Device("phone-mid");
    const RadioProfile* wifi = *p.Radio("wifi");
    const RadioProfile* lte = *p.Radio("lte");
    const RegionProfile* world = *p.Region("world");
    CHECK(IsUnmetered(*wifi));
    CHECK(IsUnmetered(**p.Radio("ethernet")));
    CHECK_FALSE(IsUnmetered(*lte));
    std::vector<Candidate> cands;
    for (uint32_t i = 0; i < 40; ++i) {
      cands.push_back(Candidate{i, phone, i % 2 == 0 ? wifi : lte, world, 100, i % 4 != 0});
    }
    RunSettings s;
    s.plan.clients_per_round = 40;
    s.plan.over_selection = 1.0;
    s.carbon.require_unmetered = true;
    RoundPlanner unmetered(s, FlopCount{1000, 2000});
    const auto a = unmetered.Select(1, cands, 0, 1000);
    CHECK(a.size() == 20);
    for (uint32_t id : a) CHECK(id % 2 == 0);
    s.carbon.require_charging = true;
    RoundPlanner both(s, FlopCount{1000, 2000});
    const auto b = both.Select(1, cands, 0, 1000);
    CHECK(b.size() == 10);
    for (uint32_t id : b) CHECK(id % 4 == 2);
    s.carbon = CarbonSettings{};
    RoundPlanner any(s, FlopCount{1000, 2000});
    CHECK(any.Select(1, cands, 0, 1000).size() == 40);
  }

  TEST_CASE("the planner's per-region hourly budget spans rounds within an hour and renews the next hour") {
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    const DeviceProfile* phone = *p.Device("phone-mid");
    const RadioProfile* wifi = *p.Radio("wifi");
    const RegionProfile* de = *p.Region("DE");
    std::vector<Candidate> cands;
    for (uint32_t i = 0; i < 30; ++i) cands.push_back(Candidate{i, phone, wifi, de, 100});
    RunSettings s;
    s.plan.clients_per_round = 10;
    s.plan.over_selection = 1.0;
    RoundPlanner probe(s, FlopCount{1e6, 2e6});
    const double j = ExpectedParticipationJoules(*phone, *wifi, probe.Estimate(cands[0], 1000));
    s.carbon.region_budget_j_per_h = 15.5 * j;  // 15 participations an hour
    RoundPlanner planner(s, FlopCount{1e6, 2e6});
    CHECK(planner.Select(1, cands, 10.1, 1000).size() == 10);
    CHECK(planner.Select(2, cands, 10.6, 1000).size() == 5);
    CHECK(planner.Select(3, cands, 10.9, 1000).empty());
    CHECK(planner.Select(4, cands, 11.0, 1000).size() == 10);
  }

  TEST_CASE("region and device shares of participations are set against clients and data") {
    const FleetMember fleet[] = {{"phone", "A", 100, 3}, {"laptop", "B", 300, 1}};
    std::vector<LedgerRow> ledger(5);
    const char* regions[] = {"A", "B", "b", "B", "A"};
    for (size_t i = 0; i < ledger.size(); ++i) {
      ledger[i].region = regions[i];
      ledger[i].device = i == 0 ? "phone" : "laptop";
    }
    ledger[4].outcome = ClientOutcome::kStraggled;  // selected, not a participation
    LedgerRow eval;
    eval.region = "A";
    eval.outcome = ClientOutcome::kEvaluated;  // not training: left out
    ledger.push_back(eval);
    const auto rows = RepresentationShares(fleet, ledger);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].kind == "region");
    CHECK(rows[0].id == "A");
    CHECK(rows[0].clients == 3);
    CHECK(rows[0].client_share == doctest::Approx(0.75));
    CHECK(rows[0].data_share == doctest::Approx(0.25));
    CHECK(rows[0].participations == 1);
    CHECK(rows[0].participation_share == doctest::Approx(0.25));
    CHECK(rows[0].selection_share == doctest::Approx(0.4));
    CHECK(rows[1].id == "B");
    CHECK(rows[1].participations == 3);  // "b" is "B"
    CHECK(rows[1].ratio() == doctest::Approx(0.75 / 0.25));
    CHECK(rows[2].kind == "device");
    CHECK(rows[2].id == "laptop");
    CHECK(rows[3].participation_share == doctest::Approx(0.25));
    const auto [low, ratio] = LowestRegionRatio(rows);
    CHECK(low == "A");
    CHECK(ratio == doctest::Approx(0.25 / 0.75));
  }
}

}  // namespace frugal
