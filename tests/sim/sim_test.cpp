#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/profiles.h"
#include "frugal/sim/config.h"
#include "frugal/sim/population.h"
#include "frugal/sim/residual_store.h"
#include "frugal/sim/runner.h"
#include "frugal/test_source_dir.h"
#include "privacy/target_noise_case.h"

namespace frugal::sim {
namespace {

// A small logistic-regression run on real Fashion-MNIST: cheap enough for ctest.
constexpr const char* kSmall = R"(
name = "small"
seed = 7
rounds = 3
pipeline = "frugal"
model = "logreg"
[data]
partition = "dirichlet"
alpha = 0.5
eval_examples = 2000
[population]
clients = 40
[round]
clients_per_round = 6
[train]
epochs = 1
batch_size = 32
learning_rate = 0.1
[uplink]
density = 0.05
[downlink]
broadcast_density = 0.05
)";

SimConfig Parse(const std::vector<std::string>& sets) {
  // The thresholds of these tests were measured with uniform selection, plain
  // averaging and the model itself evaluated, not Frugal's pipeline of the
  // scenarios (common/round/settings.cpp); `sets` come after, so a test may change them.
  std::vector<std::string> all = {"round.selection=uniform", "server.averaging=\"all\"", "server.release_ema=0"};
  all.insert(all.end(), sets.begin(), sets.end());
  auto c = ParseSimConfig(kSmall, "small.toml", all);
  REQUIRE_MESSAGE(c.ok(), c.error().ToString());
  return *c;
}

RunResult Run(const SimConfig& cfg) {
  RunOptions opts;
  auto r = RunSimulation(cfg, opts);
  REQUIRE_MESSAGE(r.ok(), r.error().ToString());
  return std::move(*r);
}

std::string ReadFile(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_SUITE("sim") {
  TEST_CASE("configuration: overrides apply, unknown keys and bad values are named") {
    SimConfig c = Parse({"pipeline=dense", "rounds=9", "train.learning_rate=0.5", "population.radios={ wifi = 1.0 }"});
    CHECK(c.pipeline == Pipeline::kDense);
    CHECK(c.task.uplink.dense);
    CHECK(c.engine.full_model.bits == 0);
    CHECK(c.rounds == 9);
    CHECK(c.task.train.learning_rate == doctest::Approx(0.5));
    REQUIRE(c.radios.size() == 1);
    CHECK(c.flat.at("rounds") == "9");

    auto unknown = ParseSimConfig(kSmall, "small.toml", {"train.epochz=3"});
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().message().find("unknown configuration key 'train.epochz'") != std::string::npos);
    auto bad = ParseSimConfig(kSmall, "small.toml", {"rounds=-2"});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("'rounds'") != std::string::npos);
    auto pipe = ParseSimConfig(kSmall, "small.toml", {"pipeline=sparse"});
    REQUIRE_FALSE(pipe.ok());
    CHECK(pipe.error().message().find("unknown pipeline 'sparse'") != std::string::npos);
    auto syntax = ParseSimConfig("rounds = = 3", "broken.toml", {});
    REQUIRE_FALSE(syntax.ok());
    CHECK(syntax.error().message().find("broken.toml:1") != std::string::npos);
  }

  TEST_CASE("a [pipelines.<name>] table applies to that pipeline only, and the command line still wins") {
    const std::string text = std::string(kSmall) + R"(
[server]
learning_rate = 1.0
[pipelines.frugal]
round.selection = "energy"
server = { learning_rate = 3.0 }
[pipelines.dense]
train.learning_rate = 0.2
)";
    auto frugal = ParseSimConfig(text, "p.toml", {});
    REQUIRE_MESSAGE(frugal.ok(), frugal.error().ToString());
    CHECK(frugal->plan.selection == SelectionPolicy::kEnergy);
    CHECK(frugal->engine.server_opt.learning_rate == doctest::Approx(3.0));
    CHECK(frugal->task.train.learning_rate == doctest::Approx(0.1));
    CHECK(frugal->flat.at("round.selection") == "energy");
    auto dense = ParseSimConfig(text, "p.toml", {"pipeline=dense"});
    REQUIRE(dense.ok());
    CHECK(dense->plan.selection == SelectionPolicy::kUniform);
    CHECK(dense->engine.server_opt.learning_rate == doctest::Approx(1.0));
    CHECK(dense->task.train.learning_rate == doctest::Approx(0.2));
    auto cli = ParseSimConfig(text, "p.toml", {"server.learning_rate=2", "round.selection=carbon"});
    REQUIRE(cli.ok());
    CHECK(cli->engine.server_opt.learning_rate == doctest::Approx(2.0));
    CHECK(cli->plan.selection == SelectionPolicy::kCarbon);
    auto typo = ParseSimConfig(std::string(kSmall) + "[pipelines.frugl]\nrounds = 2\n", "p.toml", {});
    REQUIRE_FALSE(typo.ok());
    CHECK(typo.error().message().find("[pipelines.frugl]") != std::string::npos);
    auto server = ParseSimConfig(kSmall, "p.toml", {"server.averaging=\"support\"", "server.release_ema=0.8"});
    REQUIRE_MESSAGE(server.ok(), server.error().ToString());
    CHECK(server->engine.averaging == Averaging::kSupport);
    CHECK(server->engine.release_ema == doctest::Approx(0.8));
    auto averaging = ParseSimConfig(kSmall, "p.toml", {"server.averaging=\"median\""});
    REQUIRE_FALSE(averaging.ok());
    CHECK(averaging.error().message().find("unknown averaging 'median'") != std::string::npos);
    auto ema = ParseSimConfig(kSmall, "p.toml", {"server.release_ema=1"});
    REQUIRE_FALSE(ema.ok());
    CHECK(ema.error().message().find("server.release_ema") != std::string::npos);
    auto policy = ParseSimConfig(kSmall, "p.toml", {"round.selection=greedy"});
    REQUIRE_FALSE(policy.ok());
    CHECK(policy.error().message().find("unknown selection policy 'greedy'") != std::string::npos);
  }

  TEST_CASE("energy-aware selection picks Wi-Fi clients far more often and spends fewer client joules") {
    // Half the fleet on Wi-Fi, half on LTE, whose radio tail makes a
    // participation cost far more: energy-aware selection must shift work to Wi-Fi.
    const std::vector<std::string> mix = {"population.radios={ wifi = 0.5, lte = 0.5 }", "rounds=4"};
    std::vector<std::string> energy_sets = mix;
    energy_sets.push_back("round.selection=energy");
    RunResult uniform = Run(Parse(mix));
    RunResult energy = Run(Parse(energy_sets));
    const double u_wifi = uniform.summary.joules_by_radio.at("wifi"), u_lte = uniform.summary.joules_by_radio.at("lte");
    const double e_wifi = energy.summary.joules_by_radio.count("wifi") ? energy.summary.joules_by_radio.at("wifi") : 0;
    const double e_lte = energy.summary.joules_by_radio.count("lte") ? energy.summary.joules_by_radio.at("lte") : 0;
    CHECK(e_wifi > u_wifi);                     // Wi-Fi clients do more of the work
    CHECK(e_lte < 0.5 * u_lte);                 // LTE clients far less
    CHECK(e_wifi + e_lte < 0.5 * (u_wifi + u_lte));
    CHECK(energy.rounds.back().completed == uniform.rounds.back().completed);  // same number of updates
  }

  TEST_CASE("every shipped scenario parses and has the rounds and pipeline keys") {
    // Every file of sim/scenarios, so a new scenario cannot ship unparsed.
    size_t scenarios = 0;
    for (const auto& entry : std::filesystem::directory_iterator(std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios")) {
      if (entry.path().extension() != ".toml") continue;
      const std::string path = entry.path().string();
      const std::string text = ReadFile(path);
      CHECK_MESSAGE(text.find("\nrounds = ") != std::string::npos, path);
      CHECK_MESSAGE(text.find("\npipeline = ") != std::string::npos, path);
      auto shipped = LoadSimConfig(path, {"rounds=3"});
      REQUIRE_MESSAGE(shipped.ok(), (path + ": " + (shipped.ok() ? std::string() : shipped.error().ToString())));
      CHECK(shipped->rounds == 3);
      ++scenarios;
    }
    CHECK(scenarios >= 10);
    for (const char* name : {"fmnist-iid", "fmnist-dir0.5", "fmnist-shards2", "fleet-1m", "fmnist-logreg-c10"}) {
      const std::string path = std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/" + name + ".toml";
      auto c = LoadSimConfig(path, {"pipeline=dense", "rounds=3"});
      REQUIRE_MESSAGE(c.ok(), c.error().ToString());
      CHECK(c->pipeline == Pipeline::kDense);
    }
    // The lean scenario keeps its widths and deferral in Frugal's table, so
    // `pipeline=dense` on it is the same plain FedAvg baseline as fmnist-dir0.5
    // (uniform selection over the whole fleet, no widths).
    const std::string lean = std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/fmnist-dir0.5-lean.toml";
    auto lean_frugal = LoadSimConfig(lean, {});
    REQUIRE_MESSAGE(lean_frugal.ok(), lean_frugal.error().ToString());
    CHECK(lean_frugal->pipeline == Pipeline::kFrugal);
    CHECK(lean_frugal->carbon.defer_metered);
    REQUIRE(lean_frugal->widths.size() == 1);
    CHECK(lean_frugal->widths[0].first == "phone-low");
    CHECK(lean_frugal->widths[0].second == doctest::Approx(0.6));
    auto lean_dense = LoadSimConfig(lean, {"pipeline=dense"});
    REQUIRE_MESSAGE(lean_dense.ok(), lean_dense.error().ToString());
    CHECK_FALSE(lean_dense->carbon.defer_metered);
    CHECK(lean_dense->widths.empty());
    CHECK_FALSE(lean_dense->prune.enabled());
    auto fleet = LoadSimConfig(std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/fleet-1m.toml", {});
    REQUIRE(fleet.ok());
    CHECK(fleet->clients == 1000000);
    CHECK(fleet->plan.clients_per_round == 1000);
  }

  TEST_CASE("results are identical for a seed whatever the thread count") {
    RunResult one = Run(Parse({"run.threads=1"}));
    RunResult two = Run(Parse({"run.threads=2"}));
    RunResult three = Run(Parse({"run.threads=3"}));
    REQUIRE(one.rounds.size() == 3);
    for (size_t r = 0; r < one.rounds.size(); ++r) {
      CHECK(one.rounds[r].accuracy == two.rounds[r].accuracy);
      CHECK(one.rounds[r].bytes_up == two.rounds[r].bytes_up);
      CHECK(one.rounds[r].bytes_down == three.rounds[r].bytes_down);
      CHECK(one.rounds[r].joules_radio == three.rounds[r].joules_radio);
    }
    REQUIRE(one.final_model.size() == 7850);
    CHECK(std::memcmp(one.final_model.data(), two.final_model.data(), 4 * one.final_model.size()) == 0);
    CHECK(std::memcmp(one.final_model.data(), three.final_model.data(), 4 * one.final_model.size()) == 0);
    // And a different seed gives a different run.
    RunResult other = Run(Parse({"seed=8"}));
    CHECK(std::memcmp(one.final_model.data(), other.final_model.data(), 4 * one.final_model.size()) != 0);
    // The 2NN too (GEMM and fused-step paths), with energy-aware selection, whose
    // weights use the previous round's encoded sizes, support averaging and a released average.
    const std::vector<std::string> mlp = {"model=mlp", "rounds=2", "round.selection=energy", "server.averaging=support",
                                          "server.release_ema=0.8"};
    std::vector<std::string> mlp1 = mlp, mlp2 = mlp;
    mlp1.push_back("run.threads=1");
    mlp2.push_back("run.threads=2");
    RunResult m1 = Run(Parse(mlp1)), m2 = Run(Parse(mlp2));
    REQUIRE(m1.final_model.size() == 199210);
    CHECK(std::memcmp(m1.final_model.data(), m2.final_model.data(), 4 * m1.final_model.size()) == 0);
    CHECK(m1.rounds.back().bytes_up == m2.rounds.back().bytes_up);
    // The report says what its accuracy is of.
    auto said = [&](const std::string& what) {
      return std::any_of(m1.summary.notes.begin(), m1.summary.notes.end(),
                         [&](const std::string& n) { return n.find(what) != std::string::npos; });
    };
    CHECK(said("The evaluated model is the released one"));
    CHECK(said("support averaging"));
    CHECK_FALSE(std::any_of(one.summary.notes.begin(), one.summary.notes.end(),
                            [](const std::string& n) { return n.find("released one") != std::string::npos; }));
  }

  TEST_CASE("a robust rule that runs below its bound says so in the summary's notes; one within its bound does not") {
    // 6 senders a round: f = floor(0.2 n) = 1, so Bulyan (n >= 4f + 3 = 7) runs
    // below its bound and Multi-Krum (n >= 2f + 3 = 5) within it.
    RunResult bulyan = Run(Parse({"rounds=2", "server.robust=\"bulyan\""}));
    RunResult krum = Run(Parse({"rounds=2", "server.robust=\"multi_krum\""}));
    auto note = [](const RunResult& r) {
      auto it = std::find_if(r.summary.notes.begin(), r.summary.notes.end(),
                             [](const std::string& n) { return n.find("ran below its bound") != std::string::npos; });
      return it == r.summary.notes.end() ? std::string() : *it;
    };
    REQUIRE(bulyan.rounds.size() == 2);
    REQUIRE(bulyan.rounds[0].completed == 6);
    CHECK(note(bulyan).find("in 2 rounds") != std::string::npos);
    CHECK(note(bulyan).find("round 1: bulyan's bound n >= 4f + 3 does not hold: n = 6 updates, f = 1") !=
          std::string::npos);
    CHECK(note(krum).empty());
  }

  TEST_CASE("frugal sends far fewer bytes than dense and both learn") {
    RunResult frugal = Run(Parse({}));
    RunResult dense = Run(Parse({"pipeline=dense"}));
    // Measured for this configuration (seed 7): dense 0.3355, 0.557, 0.5105 and
    // frugal 0.1555, 0.2515, 0.2535 after rounds 1-3; seed 7 is the lowest of
    // seeds 1-24 for frugal (0.25-0.56 at round 3). The untrained model scores
    // 0.014 and a pipeline that delivers nothing (uplink or downlink density
    // 0.00002) 0.02; one that delivers a fifth of the coordinates (1% instead of
    // 5%, either way) about 0.19. The thresholds sit under the measured values
    // by a margin and above all of those.
    CHECK(dense.rounds.back().accuracy > 0.45);
    CHECK(frugal.rounds.back().accuracy > 0.23);
    CHECK(frugal.rounds.back().accuracy > frugal.rounds.front().accuracy + 0.05);
    CHECK(frugal.rounds.back().loss < frugal.rounds.front().loss);
    // Dense uplink is header + 4 bytes per parameter per client.
    CHECK(dense.rounds[0].bytes_up == 6 * (4 * 7850 + 24));
    CHECK(frugal.summary.bytes_up * 10 < dense.summary.bytes_up);
    CHECK(frugal.summary.bytes_down < dense.summary.bytes_down);
  }

  TEST_CASE("clients that make version 1 from the seed download chains instead of a first full model") {
    // Without Frugal's robust rule, as the figures below were measured: centered
    // clipping's first rounds, from a zero centre, are slower (0.19 at round 2).
    RunResult seeded = Run(Parse({"rounds=2", "server.robust=\"none\""}));
    RunResult downloaded = Run(Parse({"rounds=2", "downlink.seed_init=false", "server.robust=\"none\""}));
    // Round 1: everyone holds the current version already (an empty chain of
    // 24 bytes) against an 8-bit full model of 7,850 parameters each.
    CHECK(seeded.rounds[0].bytes_down == 6 * 24);
    CHECK(downloaded.rounds[0].bytes_down > 6 * 7850);
    // Both train the same way from there: the quantized start costs little
    // accuracy (measured 0.2550 against 0.2515 from the seed; runs whose
    // updates do not arrive score about 0.02).
    CHECK(downloaded.rounds[1].accuracy > 0.23);
    CHECK(std::abs(downloaded.rounds[1].accuracy - seeded.rounds[1].accuracy) < 0.02);
  }

  TEST_CASE("downlink.merge_chains: the same rounds and accuracies, fewer bytes down (merged chains are lossless)") {
    // 6 of 40 clients a round: most have missed several steps when drawn again.
    RunResult chains = Run(Parse({"rounds=8"}));
    RunResult merged = Run(Parse({"rounds=8", "downlink.merge_chains=true"}));
    REQUIRE(chains.rounds.size() == merged.rounds.size());
    for (size_t i = 0; i < chains.rounds.size(); ++i) {
      CAPTURE(i);
      CHECK(merged.rounds[i].accuracy == chains.rounds[i].accuracy);
      CHECK(merged.rounds[i].loss == chains.rounds[i].loss);
      CHECK(merged.rounds[i].bytes_up == chains.rounds[i].bytes_up);
      CHECK(merged.rounds[i].bytes_down <= chains.rounds[i].bytes_down);
    }
    CHECK(merged.summary.bytes_down < chains.summary.bytes_down);
  }

  TEST_CASE("downlink.merge_version = 2: the same rounds, accuracies and bytes up as version 1, no more bytes down") {
    RunResult one = Run(Parse({"rounds=8", "downlink.merge_chains=true"}));
    RunResult two = Run(Parse({"rounds=8", "downlink.merge_chains=true", "downlink.merge_version=2"}));
    REQUIRE(one.rounds.size() == two.rounds.size());
    for (size_t i = 0; i < one.rounds.size(); ++i) {
      CAPTURE(i);
      CHECK(two.rounds[i].accuracy == one.rounds[i].accuracy);
      CHECK(two.rounds[i].loss == one.rounds[i].loss);
      CHECK(two.rounds[i].bytes_up == one.rounds[i].bytes_up);
      CHECK(two.rounds[i].bytes_down <= one.rounds[i].bytes_down);
    }
    CHECK(two.summary.bytes_down < one.summary.bytes_down);
  }

  TEST_CASE("stragglers past the deadline and drop-outs are counted, and their energy stays on the ledger") {
    // Twice as many selected as wanted: the round closes at the 6th update and the rest straggle.
    SimConfig cfg = Parse({"round.over_selection=2.0", "population.dropout=0.2", "rounds=2"});
    const std::string out = (std::filesystem::temp_directory_path() / "frugal-sim-stragglers").string();
    std::filesystem::remove_all(out);
    RunOptions opts;
    opts.out_dir = out;
    auto r = RunSimulation(cfg, opts);
    REQUIRE_MESSAGE(r.ok(), r.error().ToString());
    uint32_t stragglers = 0, completed = 0, selected = 0;
    for (const auto& rec : r->rounds) {
      CHECK(rec.selected == 12);
      CHECK(rec.completed == 6);
      CHECK(rec.completed + rec.stragglers <= rec.selected);
      stragglers += rec.stragglers;
      completed += rec.completed;
      selected += rec.selected;
    }
    CHECK(stragglers > 0);
    const std::string ledger = ReadFile(out + "/ledger.csv");
    size_t rows = 0, straggled = 0, dropped = 0;
    for (size_t p = 0; (p = ledger.find('\n', p)) != std::string::npos; ++p) ++rows;
    for (size_t p = 0; (p = ledger.find(",straggled", p)) != std::string::npos; ++p) ++straggled;
    for (size_t p = 0; (p = ledger.find(",dropped", p)) != std::string::npos; ++p) ++dropped;
    CHECK(straggled == stragglers);
    CHECK(dropped > 0);
    CHECK(straggled + dropped + completed == selected);
    for (const char* f : {"rounds.csv", "ledger.csv", "emissions.csv", "summary.json", "report.html"}) {
      CHECK_MESSAGE(std::filesystem::file_size(out + "/" + f) > 0, f);
    }
    std::filesystem::remove_all(out);
  }

  TEST_CASE("a deadline no client can meet fails the round's quorum and leaves the model as it was") {
    RunResult r = Run(Parse({"round.deadline_s=0.000001", "rounds=2"}));
    for (const auto& rec : r.rounds) {
      CHECK(rec.completed == 0);
      CHECK(rec.stragglers == rec.selected);
      CHECK(rec.joules_radio > 0);  // the wasted energy is still counted
    }
    CHECK(r.rounds[0].accuracy == r.rounds[1].accuracy);
  }

  TEST_CASE("population memory per client stays flat from a thousand to a million clients") {
    auto train = LoadFashionMnist(Split::kTrain);
    REQUIRE(train.ok());
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    std::vector<double> per_client;
    for (uint64_t n : {1000ull, 10000ull, 100000ull, 1000000ull}) {
      SimConfig cfg = Parse({"population.clients=" + std::to_string(n)});
      auto pop = Population::Create(cfg, *train, *profiles);
      REQUIRE(pop.ok());
      per_client.push_back(pop->BytesPerClient());
      // Sampled clients still get their own data, reproducibly.
      std::vector<uint32_t> a, b;
      auto ea = pop->Examples(n - 1, a);
      auto eb = pop->Examples(n - 1, b);
      CHECK(ea.size() == pop->NumExamples(n - 1));
      CHECK(std::equal(ea.begin(), ea.end(), eb.begin(), eb.end()));
    }
    // 1,000 clients partition the data (about 240 bytes of indices each); from
    // 10,000 on, clients are sampled on demand and hold 12 bytes of state.
    CHECK(per_client[0] < 400);
    CHECK(per_client[2] < 16);
    CHECK(per_client[3] < 13);
    CHECK(per_client[3] <= per_client[1]);
  }

  TEST_CASE("privacy.target_epsilon without a noise multiplier: frugal-sim derives the z the coordinator derives") {
    // The coordinator's half is in round_driver_test.cpp, on the same keys.
    const double expected = testing::ExpectedTargetNoise();
    REQUIRE(expected > 0);
    std::vector<std::string> sets = testing::kTargetNoiseSets;
    sets.push_back("population.clients=" + std::to_string(testing::kTargetNoiseEligible));
    const RunResult r = Run(Parse(sets));
    REQUIRE(r.summary.extra_metrics.contains("dp_noise_multiplier"));
    CHECK(r.summary.extra_metrics.at("dp_noise_multiplier") == expected);
    CHECK(r.summary.dp_epsilon <= 4);
    // A population half as large doubles q and needs more noise.
    sets.back() = "population.clients=" + std::to_string(testing::kTargetNoiseEligible / 2);
    const RunResult half = Run(Parse(sets));
    CHECK(half.summary.extra_metrics.at("dp_noise_multiplier") > expected);
  }

  TEST_CASE("data.holdout is refused: the simulator would only throw the held-out examples away") {
    auto held = ParseSimConfig(kSmall, "small.toml", {"data.holdout=0.2"});
    REQUIRE_FALSE(held.ok());
    CHECK(held.error().message().find("data.holdout") != std::string::npos);
    CHECK(held.error().message().find("thrown away") != std::string::npos);
    CHECK(ParseSimConfig(kSmall, "small.toml", {"data.holdout=0"}).ok());
  }

  TEST_CASE("a replay's roster is the population: its ids, profiles, and shares less their recorded holdout") {
    auto train = LoadFashionMnist(Split::kTrain);
    REQUIRE(train.ok());
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    SimConfig cfg = Parse({});
    const PartitionSpec spec{.scheme = "dirichlet", .clients = 10, .alpha = 0.5, .shards_per_client = 2, .seed = 3,
                             .holdout = 0.2};
    auto fleet = PartitionFleet(train->labels, 10, spec);
    REQUIRE(fleet.ok());
    for (uint32_t index : {2u, 5u, 9u}) {
      const size_t kept = SplitClientHoldout((*fleet)[index], spec, index).train.size();
      cfg.roster.push_back(RosterEntry{.id = 10 + index, .name = "device-" + std::to_string(index),
                                       .device = "rpi4", .radio = index == 5 ? "lte" : "wifi", .region = "world",
                                       .examples = kept, .partition = spec, .partition_index = index});
    }
    auto pop = Population::Create(cfg, *train, *profiles);
    REQUIRE_MESSAGE(pop.ok(), pop.error().ToString());
    REQUIRE(pop->size() == 3);
    CHECK(pop->id(1) == 15);
    CHECK(pop->IndexOf(19) == 2);
    CHECK(pop->radio(1).id == "lte");
    std::vector<uint32_t> buf;
    auto ex = pop->Examples(1, buf);
    const std::vector<uint32_t> expect = SplitClientHoldout((*fleet)[5], spec, 5).train;
    CHECK(std::vector<uint32_t>(ex.begin(), ex.end()) == expect);
    CHECK(expect.size() < (*fleet)[5].size());
    // A roster that disagrees with its split is refused, naming the client.
    cfg.roster[2].examples += 1;
    auto wrong = Population::Create(cfg, *train, *profiles);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message().find("device-9") != std::string::npos);
    cfg.roster[2].examples -= 1;
    cfg.roster[0].partition.reset();
    auto own_data = Population::Create(cfg, *train, *profiles);
    REQUIRE_FALSE(own_data.ok());
    CHECK(own_data.error().message().find("own data") != std::string::npos);
  }

  TEST_CASE("residual store: only clients with a residual cost memory, and spilled residuals round-trip") {
    const size_t d = 1000;
    const std::string spill = (std::filesystem::temp_directory_path() / "frugal-residual-test.bin").string();
    ResidualStore store(d, 3 * d * sizeof(float), spill);
    std::vector<float> out(d);
    REQUIRE(store.Load(12345, out).ok());
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == 0; }));
    CHECK(store.clients() == 0);
    for (uint64_t c = 0; c < 10; ++c) {
      std::vector<float> v(d, static_cast<float>(c) + 0.5f);
      REQUIRE(store.Store(c * 100000, v).ok());
    }
    CHECK(store.clients() == 10);
    CHECK(store.resident_bytes() == 3 * d * sizeof(float));
    CHECK(store.spilled_bytes() == 7 * d * sizeof(float));
    // Resident (the first 3) and spilled clients alike hold one; others do not.
    CHECK(store.Holds(0));
    CHECK(store.Holds(900000));
    CHECK_FALSE(store.Holds(12345));
    for (uint64_t c = 0; c < 10; ++c) {
      REQUIRE(store.Load(c * 100000, out).ok());
      CHECK(out[d - 1] == static_cast<float>(c) + 0.5f);
    }
    std::vector<float> wrong(d + 1);
    CHECK_FALSE(store.Store(1, wrong).ok());
  }

  TEST_CASE("residual store in bf16: half the bytes, values rounded to nearest even, resident and spilled alike") {
    const size_t d = 777;
    const std::string spill = (std::filesystem::temp_directory_path() / "frugal-residual-bf16-test.bin").string();
    ResidualStore store(d, 2 * d * sizeof(uint16_t), spill, ResidualPrecision::kBf16);
    CHECK(store.bytes_per_residual() == d * sizeof(uint16_t));
    Rng rng(3);
    std::vector<std::vector<float>> in(5, std::vector<float>(d));
    for (auto& v : in) {
      for (float& x : v) x = static_cast<float>(rng.Normal() * 1e-6);
    }
    in[0][0] = 1.0f + 1.0f / 256.0f;  // exactly halfway between two bf16 values: ties to even (1.0)
    in[0][1] = 1.0f + 3.0f / 256.0f;  // halfway, rounds up to the even 1 + 4/256
    for (uint64_t c = 0; c < in.size(); ++c) REQUIRE(store.Store(c, in[c]).ok());
    CHECK(store.resident_bytes() == 2 * d * sizeof(uint16_t));
    CHECK(store.spilled_bytes() == 3 * d * sizeof(uint16_t));
    std::vector<float> out(d);
    for (uint64_t c = 0; c < in.size(); ++c) {
      REQUIRE(store.Load(c, out).ok());
      for (size_t i = 0; i < d; ++i) {
        // Plain reference: the nearest bf16, found by trying both neighbours.
        uint32_t u;
        std::memcpy(&u, &in[c][i], sizeof u);
        const uint32_t lo = u & 0xFFFF0000u, hi = lo + 0x10000u;
        float flo, fhi;
        std::memcpy(&flo, &lo, sizeof lo);
        std::memcpy(&fhi, &hi, sizeof hi);
        const double dlo = std::abs(double{in[c][i]} - flo), dhi = std::abs(double{in[c][i]} - fhi);
        const float expect = dlo < dhi ? flo : dhi < dlo ? fhi : (((lo >> 16) & 1) == 0 ? flo : fhi);
        CHECK(out[i] == expect);
      }
    }
    REQUIRE(store.Load(0, out).ok());
    CHECK(out[0] == 1.0f);
    CHECK(out[1] == 1.0f + 4.0f / 256.0f);
  }
}

}  // namespace
}  // namespace frugal::sim
