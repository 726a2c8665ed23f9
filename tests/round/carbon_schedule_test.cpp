// Carbon-aware scheduling in the core round path: the [carbon] keys, the
// expected intensity a shift minimises, how long a round waits (slack, wait
// cap, minimum saving), selection with per-region floors and budgets (against
// the plain weighted sampler), eligibility by device policy, and the shares
// of participations by region and device class.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <set>
#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/random.h"
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
    CHECK(s->carbon.shift_mode == ShiftMode::kRegion);
    auto m = Read("[carbon]\nshift_mode = \"round\"\n");
    REQUIRE(m.ok());
    CHECK(m->carbon.shift_mode == ShiftMode::kRound);
    auto t = Read("[carbon]\nhourly = \"yearly\"\nshift_slack_h = 2.5\nregion_floor = 0.5\nrequire_unmetered = true\n");
    REQUIRE(t.ok());
    CHECK(t->carbon.hourly == HourlyMode::kYearly);
    CHECK(t->carbon.shift_slack_h == 2.5);
    CHECK(t->carbon.region_floor == 0.5);
    CHECK(t->carbon.require_unmetered);
    for (const char* bad : {"[carbon]\nday_of_year = 0\n", "[carbon]\nregion_floor = 1.5\n",
                            "[carbon]\nshift_slack_h = -1\n", "[carbon]\nhourly = \"hourly\"\n",
                            "[carbon]\nshift_mode = \"later\"\n"}) {
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

  TEST_CASE("deferring metered clients: unmetered ones fill the round, metered ones only the slots left") {
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    const DeviceProfile* phone = *p.Device("phone-mid");
    const RadioProfile* wifi = *p.Radio("wifi");
    const RadioProfile* lte = *p.Radio("lte");
    const RegionProfile* world = *p.Region("world");
    auto fleet = [&](uint32_t n, uint32_t wifi_every) {
      std::vector<Candidate> cands;
      for (uint32_t i = 0; i < n; ++i) cands.push_back(Candidate{i, phone, i % wifi_every == 0 ? wifi : lte, world, 100});
      return cands;
    };
    for (SelectionPolicy policy : {SelectionPolicy::kEnergy, SelectionPolicy::kUniform}) {
      CAPTURE(SelectionPolicyName(policy));
      RunSettings s;
      s.plan.clients_per_round = 10;
      s.plan.over_selection = 1.0;
      s.plan.selection = policy;
      // Half of 40 on Wi-Fi: the round is theirs, and the draw is the one
      // that leaves the metered clients out altogether (the plain reference).
      const auto half = fleet(40, 2);
      s.carbon.require_unmetered = true;
      const auto only_unmetered = RoundPlanner(s, FlopCount{1000, 2000}).Select(3, half, 0, 1000);
      s.carbon.require_unmetered = false;
      s.carbon.defer_metered = true;
      RoundPlanner deferring(s, FlopCount{1000, 2000});
      const auto a = deferring.Select(3, half, 0, 1000);
      CHECK(a.size() == 10);
      for (uint32_t id : a) CHECK(id % 2 == 0);
      CHECK(a == only_unmetered);
      // 4 of 40 on Wi-Fi: all four, and six LTE clients fill the round.
      const auto few = fleet(40, 10);
      const auto b = deferring.Select(3, few, 0, 1000);
      REQUIRE(b.size() == 10);
      CHECK(std::is_sorted(b.begin(), b.end()));
      CHECK(std::count_if(b.begin(), b.end(), [](uint32_t id) { return id % 10 == 0; }) == 4);
      // Without deferral a uniform draw takes metered clients even when
      // unmetered ones would fill the round (the cost this key removes).
      s.carbon.defer_metered = false;
      if (policy == SelectionPolicy::kUniform) {
        const auto plain = RoundPlanner(s, FlopCount{1000, 2000}).Select(3, half, 0, 1000);
        CHECK(std::count_if(plain.begin(), plain.end(), [](uint32_t id) { return id % 2 == 1; }) > 0);
      }
    }
    // Read, and refused where it cannot hold (errors name the key).
    auto on = Read("[carbon]\ndefer_metered = true\n");
    REQUIRE(on.ok());
    CHECK(on->carbon.defer_metered);
    for (const char* bad : {"[carbon]\ndefer_metered = true\nregion_floor = 0.5\n",
                            "[carbon]\ndefer_metered = true\nshift_slack_h = 2\n",
                            "[round]\nsampling = \"poisson\"\nselection = \"uniform\"\n[carbon]\ndefer_metered = true\n"}) {
      CAPTURE(bad);
      auto r = Read(bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().message().find("carbon.defer_metered") != std::string::npos);
    }
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

  TEST_CASE("a region defers while a cleaner hour of its own lies within the slack") {
    const RegionProfile a = Stepped("A", 500, 100, 4, 6);
    CarbonSettings s;
    s.shift_slack_h = 2;
    s.shift_step_h = 1;
    CHECK_FALSE(RegionDefers(a, s, 0.0));  // hours 1 and 2 are no cleaner
    CHECK(RegionDefers(a, s, 2.0));        // hour 4 is in reach
    CHECK(RegionDefers(a, s, 3.5));
    CHECK_FALSE(RegionDefers(a, s, 4.0));  // clean now
    CHECK_FALSE(RegionDefers(a, s, 5.0));  // hour 6 and 7 are dirtier
    s.shift_mode = ShiftMode::kRound;      // the whole round waits instead
    CHECK_FALSE(RegionDefers(a, s, 2.0));
    s.shift_mode = ShiftMode::kRegion;
    s.shift_slack_h = 0;
    CHECK_FALSE(RegionDefers(a, s, 2.0));
    s.shift_slack_h = 2;
    s.shift_min_saving = 0.9;  // 500 -> 100 saves 80%, not 90%
    CHECK_FALSE(RegionDefers(a, s, 2.0));
  }

  TEST_CASE("per-region quotas and deferral against a plain reference") {
    // Directed: three regions of ten equal candidates; region 0 defers.
    std::vector<BudgetedCandidate> c;
    for (uint32_t i = 0; i < 30; ++i) c.push_back({i, 1.0, i / 10, 1.0});
    auto per_region = [](const std::vector<uint32_t>& sel) {
      std::vector<int> n(3, 0);
      for (uint32_t id : sel) ++n[id / 10];
      return n;
    };
    const uint64_t floors[] = {0, 1, 1};
    const uint8_t deferred[] = {1, 0, 0};
    CHECK(per_region(SelectWithRegionQuotas(c, 6, 5, floors, deferred, {}))[0] == 0);
    CHECK(per_region(SelectWithRegionQuotas(c, 25, 5, floors, deferred, {})) == std::vector<int>{5, 10, 10});
    const uint64_t owed[] = {4, 1, 1};  // a deferred region's floor still holds
    CHECK(per_region(SelectWithRegionQuotas(c, 6, 5, owed, deferred, {}))[0] == 4);

    // Random: the same keys as the sampler (one Rng draw per candidate, log(u) / w),
    // then each region's floor from its best keys, then the rest by key, deferred regions last.
    Rng gen(11);
    for (int trial = 0; trial < 50; ++trial) {
      const uint32_t regions = 4;
      std::vector<BudgetedCandidate> cand;
      const auto n = static_cast<uint32_t>(20 + gen.UniformInt(60));
      for (uint32_t i = 0; i < n; ++i) {
        cand.push_back({i * 2 + 1, gen.Uniform() < 0.1 ? 0.0 : 0.1 + gen.Uniform(),
                        static_cast<uint32_t>(gen.UniformInt(regions)), 1.0});
      }
      std::vector<uint64_t> fl(regions);
      std::vector<uint8_t> df(regions);
      for (uint32_t r = 0; r < regions; ++r) {
        fl[r] = gen.UniformInt(4);
        df[r] = gen.Uniform() < 0.5 ? 1 : 0;
      }
      const size_t count = 12 + gen.UniformInt(8);  // at least the floors' 4 x 3
      const uint64_t seed = 100 + static_cast<uint64_t>(trial);
      Rng rng(seed);
      std::vector<std::pair<double, size_t>> keyed;  // (key, index)
      for (size_t i = 0; i < cand.size(); ++i) {
        const double u = rng.Uniform();
        if (cand[i].weight > 0) keyed.push_back({std::log(u) / cand[i].weight, i});
      }
      std::vector<size_t> order;  // best key first
      std::vector<bool> used(keyed.size(), false);
      for (size_t k = 0; k < keyed.size(); ++k) {
        size_t best = keyed.size();
        for (size_t j = 0; j < keyed.size(); ++j) {
          if (!used[j] && (best == keyed.size() || keyed[j].first > keyed[best].first)) best = j;
        }
        used[best] = true;
        order.push_back(keyed[best].second);
      }
      std::set<uint32_t> want;
      std::vector<uint64_t> left = fl;
      for (size_t i : order) {
        if (left[cand[i].region] > 0) --left[cand[i].region], want.insert(cand[i].id);
      }
      for (int pass = 0; pass < 2; ++pass) {
        for (size_t i : order) {
          if (want.size() >= count) break;
          if ((df[cand[i].region] != 0) == (pass == 1)) want.insert(cand[i].id);
        }
      }
      const auto got = SelectWithRegionQuotas(cand, count, seed, fl, df, {});
      CHECK(std::set<uint32_t>(got.begin(), got.end()) == want);
      CHECK(std::is_sorted(got.begin(), got.end()));
    }
  }

  TEST_CASE("a deferred region's floor is owed until its clean hours, or for the slack at most") {
    RegionFloorLedger ledger;
    // Owed for three rounds while deferring; the fourth, a slack (3 h) after the first, pays it all.
    CHECK(ledger.Due("A", 1.0, true, 3, 0.0) == 0);
    CHECK(ledger.Due("A", 1.0, true, 3, 1.0) == 0);
    CHECK(ledger.Due("A", 1.0, true, 3, 2.0) == 0);
    CHECK(ledger.owed("A") == doctest::Approx(3));
    CHECK(ledger.Due("A", 1.0, true, 3, 3.0) == 4);
    ledger.Took("A", 4);
    CHECK(ledger.owed("A") == 0);
    // Not deferring: the round's own quota, rounded up; picks beyond it owe nothing later.
    CHECK(ledger.Due("A", 0.5, false, 3, 4.0) == 1);
    ledger.Took("A", 3);
    CHECK(ledger.owed("A") == 0);
    CHECK(ledger.Due("B", 2.5, true, 3, 4.0) == 0);
    CHECK(ledger.Due("B", 2.5, false, 3, 5.0) == 5);  // clean again: pays what deferring owed
    ledger.Took("B", 2);
    CHECK(ledger.owed("B") == doctest::Approx(3));
  }

  TEST_CASE("per-region shifting moves a region's floor into its clean hours without waiting") {
    // A is very dirty (3000) except in UTC hours 4-6 (100); B is 300 all day.
    // Twenty candidates each, ten slots a round, one round an hour, carbon-aware
    // selection with a floor of 0.2 (one slot each a round).
    const RegionProfile a = Stepped("A", 3000, 100, 4, 6), b = Stepped("B", 300, 300, 0, 0);
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    std::vector<Candidate> cands;
    for (uint32_t i = 0; i < 40; ++i) {
      cands.push_back(Candidate{i, *p.Device("phone-mid"), *p.Radio("wifi"), i < 20 ? &a : &b, 100});
    }
    RunSettings s;
    s.plan.clients_per_round = 10;
    s.plan.over_selection = 1.0;
    s.plan.selection = SelectionPolicy::kCarbon;
    s.carbon.region_floor = 0.2;
    s.carbon.shift_step_h = 1;
    struct Outcome {
      std::vector<int> from_a;
      double intensity = 0;  // mean over the participations
    };
    auto run = [&](double slack_h, bool draw_last) {
      s.carbon.shift_slack_h = slack_h;
      s.carbon.shift_draw_last = draw_last;
      RoundPlanner planner(s, FlopCount{1000, 2000});
      Outcome o;
      for (uint32_t h = 0; h < 8; ++h) {
        CHECK(planner.ShiftDelayHours(cands, h) == 0);  // per-region shifting never delays a round
        const auto sel = planner.Select(h + 1, cands, h, 1000);
        REQUIRE(sel.size() == 10);
        const auto n = static_cast<int>(std::count_if(sel.begin(), sel.end(), [](uint32_t id) { return id < 20; }));
        o.from_a.push_back(n);
        o.intensity += (n * CarbonIntensity(a, h) + (10 - n) * CarbonIntensity(b, h)) / 80;
      }
      return o;
    };
    auto sum = [](const std::vector<int>& v, int from, int to) {
      int t = 0;
      for (int h = from; h < to; ++h) t += v[static_cast<size_t>(h)];
      return t;
    };
    const Outcome plain = run(0, false), shifted = run(3, false), last = run(3, true);
    for (int n : plain.from_a) CHECK(n >= 1);  // the floor, every round
    // Hours 1-3 see A's clean hour 4 within the slack: A's floor is owed, and
    // hour 4 pays it (its own slot and the three owed) beside what A's weight wins.
    CHECK(sum(shifted.from_a, 1, 4) < sum(plain.from_a, 1, 4));
    CHECK(shifted.from_a[4] >= 4);
    // Drawn last, A gets nothing while it defers: B fills the rounds.
    for (int h = 1; h <= 3; ++h) CHECK(last.from_a[static_cast<size_t>(h)] == 0);
    CHECK(last.from_a[4] >= 4);
    // Over the eight hours A keeps its floor, and the clients ran on a cleaner grid.
    CHECK(sum(shifted.from_a, 0, 8) >= 8);
    CHECK(shifted.intensity < plain.intensity);
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
