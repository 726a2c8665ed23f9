// Carbon-aware scheduling in the simulator: a round waits on the virtual clock
// for its regions' cleaner hours exactly as long as the core's TimeShifter
// says, the ledger prices it at the hour it ran, and the run reports each
// region's and device class's share of participations.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "frugal/energy/grid_curves.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/carbon_schedule.h"
#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"
#include "frugal/test_source_dir.h"

namespace frugal::sim {
namespace {

// A small logistic-regression run on real Fashion-MNIST, every client in
// Germany and always online, from 04:00 UTC with an hour between rounds.
constexpr const char* kGermany = R"(
name = "carbon-small"
seed = 3
rounds = 3
pipeline = "frugal"
model = "logreg"
[data]
partition = "dirichlet"
alpha = 0.5
eval_examples = 300
[population]
clients = 30
regions = { DE = 1.0 }
availability = { always = 1.0 }
[round]
clients_per_round = 5
interval_s = 3600
selection = "uniform"
[train]
epochs = 1
batch_size = 32
learning_rate = 0.1
[run]
start_utc_hour = 4
[carbon]
hourly = "derived"
shift_step_h = 1.0
shift_max_wait_ratio = 0
)";

RunResult Run(const std::vector<std::string>& sets) {
  auto c = ParseSimConfig(kGermany, "carbon-small.toml", sets);
  REQUIRE_MESSAGE(c.ok(), c.error().ToString());
  auto r = RunSimulation(*c, RunOptions{});
  REQUIRE_MESSAGE(r.ok(), r.error().ToString());
  return std::move(*r);
}

}  // namespace

TEST_SUITE("sim") {
  TEST_CASE("a round waits on the virtual clock for cleaner hours and is priced at the hour it ran") {
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    REQUIRE(ApplyHourlyCurves(p, HourlyMode::kDerived, 80, {}, "").ok());
    const RegionProfile& de = **p.Region("DE");
    CarbonSettings s;
    s.shift_slack_h = 6;
    s.shift_mode = ShiftMode::kRound;
    s.shift_step_h = 1;
    s.shift_max_wait_ratio = 0;
    TimeShifter reference(s);
    const RegionCount mix[] = {{&de, 30}};
    const double first_wait = reference.Delay(mix, SelectionPolicy::kUniform, 4.0);
    REQUIRE(first_wait > 0);

    const RunResult fixed = Run({});
    const RunResult shifted = Run({"carbon.shift_slack_h=6", "carbon.shift_mode=\"round\""});
    CHECK(fixed.rounds[0].utc_hour == doctest::Approx(4.0));
    CHECK(shifted.rounds[0].utc_hour == doctest::Approx(4.0 + first_wait));
    double waited = first_wait;
    for (size_t i = 1; i < shifted.rounds.size(); ++i) {
      const double due = shifted.rounds[i - 1].utc_hour + (shifted.rounds[i - 1].virtual_seconds + 3600) / 3600;
      const double wait = reference.Delay(mix, SelectionPolicy::kUniform, due);
      CHECK(shifted.rounds[i].utc_hour == doctest::Approx(due + wait));
      waited += wait;
    }
    CHECK(shifted.summary.extra_metrics.at("shift_wait_seconds") == doctest::Approx(waited * 3600));
    // The ledger prices each round at the hour it ran: Germany's noon is cleaner than its dawn.
    for (const RunResult* r : {&fixed, &shifted}) {
      for (const RoundRecord& rec : r->rounds) {
        const double joules = rec.joules_compute + rec.joules_radio;
        CHECK(rec.gco2e == doctest::Approx(joules / 3.6e6 * CarbonIntensity(de, rec.utc_hour)).epsilon(1e-9));
      }
    }
    CHECK(CarbonIntensity(de, shifted.rounds[0].utc_hour) < CarbonIntensity(de, fixed.rounds[0].utc_hour));
  }

  TEST_CASE("per-region shifting (the default mode) runs every round on time") {
    const RunResult fixed = Run({});
    const RunResult shifted = Run({"carbon.shift_slack_h=6"});
    REQUIRE(shifted.rounds.size() == fixed.rounds.size());
    for (size_t i = 0; i < shifted.rounds.size(); ++i) {
      CHECK(shifted.rounds[i].utc_hour == doctest::Approx(fixed.rounds[i].utc_hour));
    }
    CHECK(shifted.summary.extra_metrics.at("shift_wait_seconds") == 0);
  }

  TEST_CASE("a run reports each region's and device class's share of participations against clients and data") {
    const RunResult r = Run({"population.regions={ DE = 0.5, FR = 0.5 }", "rounds=2"});
    uint64_t clients = 0, participations = 0;
    double share = 0;
    for (const ShareRow& row : r.summary.representation) {
      if (row.kind != "region") continue;
      clients += row.clients;
      participations += row.participations;
      share += row.participation_share;
      CHECK((row.id == "DE" || row.id == "FR"));
    }
    CHECK(clients == 30);
    uint64_t completed = 0;
    for (const RoundRecord& rec : r.rounds) completed += rec.completed;
    CHECK(participations == completed);
    CHECK(share == doctest::Approx(1.0));
    CHECK(r.summary.extra_metrics.count("lowest_region_participation_ratio") == 1);
  }

  TEST_CASE("fleet-carbon parses, with carbon-aware selection, a region floor and time shifting in Frugal's pipeline") {
    auto c = LoadSimConfig(std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/fleet-carbon.toml", {"rounds=2"});
    REQUIRE_MESSAGE(c.ok(), c.error().ToString());
    CHECK(c->plan.selection == SelectionPolicy::kCarbon);
    CHECK(c->carbon.shifts());
    CHECK(c->carbon.region_floor == 0.6);
    CHECK(c->regions.size() == 8);
    auto base = LoadSimConfig(std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/fleet-carbon.toml",
                              {"round.selection=uniform", "carbon.shift_slack_h=0", "carbon.region_floor=0"});
    REQUIRE(base.ok());
    CHECK(base->plan.selection == SelectionPolicy::kUniform);
    CHECK_FALSE(base->carbon.shifts());
  }
}

}  // namespace frugal::sim
