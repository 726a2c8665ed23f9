// The run settings both front ends read: a scenario's [pipelines.<name>] table
// and command-line overrides of it ("--set pipelines.frugal.<key>=...").
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/round/settings.h"

namespace frugal {
namespace {

// What frugal-sim and frugal-coordinator do with a configuration and --set
// overrides before reading their own keys: parse, lay the pipeline's table,
// rename old keys, read the run settings and refuse unknown keys.
Result<RunSettings> Read(const std::string& text, const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(text, "scenario.toml", overrides));
  RunSettings s;
  FRUGAL_RETURN_IF_ERROR(ApplyPipelineTable(t, s.pipeline, overrides));
  std::vector<std::string> warnings;
  FRUGAL_RETURN_IF_ERROR(RenameDeprecatedKeys(t, warnings));
  ConfigReader r(t);
  FRUGAL_RETURN_IF_ERROR(ReadRunSettings(r, s));
  r.CheckUnknown();
  if (r.error()) return *r.error();
  return s;
}

const char* kScenario =
    "[uplink]\n"
    "density = 0.1\n"
    "[pipelines.frugal]\n"
    "uplink.density = 0.02\n"
    "round.selection = \"energy\"\n";

TEST_SUITE("round") {
  TEST_CASE("--set pipelines.<name>.<key> lands in that pipeline's table and applies when it runs") {
    auto s = Read(kScenario, {"pipelines.frugal.uplink.density=0.05"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->pipeline == Pipeline::kFrugal);
    CHECK(s->task.uplink.density == doctest::Approx(0.05));
    CHECK(s->plan.selection == SelectionPolicy::kEnergy);

    // The same override with the dense pipeline running changes nothing: dense
    // stays plain FedAvg on the top-level keys.
    s = Read(kScenario, {"pipeline=dense", "pipelines.frugal.uplink.density=0.05"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->pipeline == Pipeline::kDense);
    CHECK(s->plan.selection == SelectionPolicy::kUniform);

    // A scenario without [pipelines] gets the table from the command line.
    s = Read("[uplink]\ndensity = 0.1\n", {"pipelines.frugal.uplink.density=0.03"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->task.uplink.density == doctest::Approx(0.03));

    // A key of another pipeline's table is carried and dropped with it.
    s = Read(kScenario, {"pipelines.dense.round.clients_per_round=7"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->plan.clients_per_round != 7);
  }

  TEST_CASE("overrides apply in command-line order, pipeline keys and plain keys alike") {
    auto s = Read(kScenario, {"pipelines.frugal.uplink.density=0.05", "uplink.density=0.07"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->task.uplink.density == doctest::Approx(0.07));
    s = Read(kScenario, {"uplink.density=0.07", "pipelines.frugal.uplink.density=0.05"});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->task.uplink.density == doctest::Approx(0.05));
    // Without a pipeline override the scenario's pipeline table still beats its top level.
    s = Read(kScenario, {});
    REQUIRE_MESSAGE(s.ok(), s.error().ToString());
    CHECK(s->task.uplink.density == doctest::Approx(0.02));
  }

  TEST_CASE("Frugal's pipeline is defined once in the core; dense stays plain FedAvg") {
    auto frugal = Read("", {});
    REQUIRE_MESSAGE(frugal.ok(), frugal.error().ToString());
    CHECK(frugal->pipeline == Pipeline::kFrugal);
    CHECK(frugal->plan.selection == SelectionPolicy::kEnergy);
    CHECK(frugal->engine.averaging == Averaging::kSupport);
    CHECK(frugal->engine.release_ema == doctest::Approx(0.8));
    CHECK(frugal->engine.robust.rule == RobustRule::kCenteredClip);
    CHECK(frugal->task.uplink.density == doctest::Approx(0.02));
    CHECK(frugal->engine.broadcast.density == doctest::Approx(0.005));
    CHECK(frugal->engine.delta_window == 256);
    CHECK_FALSE(frugal->engine.merge_chains);  // agents built before kind 3 cannot read it
    auto merging = Read("", {"downlink.merge_chains=true"});
    REQUIRE_MESSAGE(merging.ok(), merging.error().ToString());
    CHECK(merging->engine.merge_chains);
    CHECK(merging->engine.merge_version == 1);  // agents built before version 2 refuse its payloads
    auto v2 = Read("", {"downlink.merge_chains=true", "downlink.merge_version=2"});
    REQUIRE_MESSAGE(v2.ok(), v2.error().ToString());
    CHECK(v2->engine.merge_version == 2);
    auto v4 = Read("", {"downlink.merge_version=4", "secure.derive_guide=true"});
    REQUIRE_MESSAGE(v4.ok(), v4.error().ToString());  // version 4 combines with derive_guide
    CHECK(v4->engine.merge_version == 4);
    auto v5 = Read("", {"downlink.merge_version=5"});
    REQUIRE_FALSE(v5.ok());
    CHECK(v5.error().message().find("downlink.merge_version must be 1, 2, 3 or 4") != std::string::npos);
    // Version 3 is decoded against the task's guide, which a deriving client has not yet computed.
    auto v3_derive = Read("", {"downlink.merge_version=3", "secure.derive_guide=true"});
    REQUIRE_FALSE(v3_derive.ok());
    CHECK(v3_derive.error().message().find("secure.derive_guide = true") != std::string::npos);
    auto v2_derive = Read("", {"downlink.merge_version=2", "secure.derive_guide=true"});
    CHECK_MESSAGE(v2_derive.ok(), v2_derive.error().ToString());

    auto dense = Read("pipeline = \"dense\"\n", {});
    REQUIRE_MESSAGE(dense.ok(), dense.error().ToString());
    CHECK(dense->plan.selection == SelectionPolicy::kUniform);
    CHECK(dense->engine.averaging == Averaging::kAll);
    CHECK(dense->engine.release_ema == 0);
    CHECK(dense->engine.robust.rule == RobustRule::kNone);
    CHECK(dense->task.uplink.dense);

    // What a configuration says wins over the pipeline's settings: its top level,
    // its [pipelines.frugal] table and --set, in that order.
    auto own = Read("[uplink]\ndensity = 0.05\n[round]\nselection = \"uniform\"\n", {"server.release_ema=0.5"});
    REQUIRE_MESSAGE(own.ok(), own.error().ToString());
    CHECK(own->task.uplink.density == doctest::Approx(0.05));
    CHECK(own->plan.selection == SelectionPolicy::kUniform);
    CHECK(own->engine.release_ema == doctest::Approx(0.5));
    CHECK(own->engine.averaging == Averaging::kSupport);
  }

  TEST_CASE("downlink.broadcast_block: off by default, read for the pipelines that send steps, refused elsewhere and out of range") {
    auto plain = Read("", {});
    REQUIRE_MESSAGE(plain.ok(), plain.error().ToString());
    CHECK(plain->engine.broadcast.block == 1);
    CHECK(plain->task.uplink.block == 1);
    for (const char* pipeline : {"frugal", "secure"}) {
      auto s = Read("", {std::string("pipeline=") + pipeline, "downlink.broadcast_block=4"});
      REQUIRE_MESSAGE(s.ok(), s.error().ToString());
      CHECK(s->engine.broadcast.block == 4);
      CHECK(s->task.uplink.block == 1);  // the clients' uplink is untouched
    }
    auto dense = Read("", {"pipeline=dense", "downlink.broadcast_block=4"});
    REQUIRE_FALSE(dense.ok());
    CHECK(dense.error().ToString().find("pipeline = \"dense\"") != std::string::npos);
    CHECK(dense.error().ToString().find("no broadcast steps") != std::string::npos);
    CHECK(Read("", {"pipeline=dense", "downlink.broadcast_block=1"}).ok());
    for (const char* bad : {"downlink.broadcast_block=0", "downlink.broadcast_block=4097"}) {
      auto s = Read("", {bad});
      REQUIRE_FALSE(s.ok());
      CHECK(s.error().ToString().find("downlink.broadcast_block must be in [1, 4096]") != std::string::npos);
    }
  }

  TEST_CASE("a pipeline override with an unknown pipeline or key is refused, naming it") {
    auto s = Read(kScenario, {"pipelines.frugl.uplink.density=0.05"});
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("pipelines.frugl") != std::string::npos);
    s = Read(kScenario, {"pipelines.frugal.uplink.densty=0.05"});
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("uplink.densty") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
