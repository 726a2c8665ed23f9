// [prune] and [widths] through a front end: a small frugal-sim run on real
// Fashion-MNIST whose ledger must price every participation at the FLOPs of
// the shape that client actually trained (the pruned model after each step,
// the nested sub-network for the narrow class), and whose summary names the
// shape the run ended with.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "frugal/model/prune.h"
#include "frugal/round/lean_round.h"
#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"

namespace frugal::sim {
namespace {

constexpr const char* kPruned = R"(
name = "frugal-models-pruned"
seed = 5
rounds = 4
pipeline = "frugal"
model = "mlp"
[data]
partition = "dirichlet"
alpha = 0.5
[eval]
examples = 500
[population]
clients = 20
availability = { always = 1.0 }
[round]
clients_per_round = 6
[train]
epochs = 1
batch_size = 32
learning_rate = 0.05
[prune]
target_flops_fraction = 0.5
start_round = 1
steps = 2
every = 1
[widths]
devices = { phone-low = 0.5 }
)";

// Only narrow clients, two rounds, no pruning: which units they train is all
// that differs between fixed slices and rolling windows (widths.rolling).
constexpr const char* kNarrowOnly = R"(
name = "frugal-models-narrow"
seed = 5
rounds = 2
pipeline = "frugal"
model = "mlp"
[data]
partition = "dirichlet"
alpha = 0.5
[eval]
examples = 200
[population]
clients = 20
devices = { phone-low = 1.0 }
availability = { always = 1.0 }
[round]
clients_per_round = 6
[train]
epochs = 1
batch_size = 32
learning_rate = 0.05
[widths]
devices = { phone-low = 0.5 }
)";
// The McMahan CNN pruned in two steps to half its training FLOPs, on a
// sampled fleet (16 examples a client) so that three rounds stay small.
constexpr const char* kPrunedCnn = R"(
name = "frugal-models-pruned-cnn"
seed = 5
rounds = 3
pipeline = "frugal"
model = "cnn"
[data]
samples_per_client = 16
[eval]
examples = 100
every = 3
[population]
clients = 6001
availability = { always = 1.0 }
[round]
clients_per_round = 3
[train]
epochs = 1
batch_size = 16
learning_rate = 0.05
[prune]
target_flops_fraction = 0.5
start_round = 1
steps = 2
every = 1
)";

// A CSV file as rows of named fields (the run directory's files have no quoted commas here).
std::vector<std::map<std::string, std::string>> ReadCsv(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> names;
  std::stringstream head(line);
  for (std::string f; std::getline(head, f, ',');) names.push_back(f);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::map<std::string, std::string> row;
    size_t i = 0;
    for (std::string f; std::getline(ss, f, ',') && i < names.size(); ++i) row[names[i]] = f;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::filesystem::path RunDir(const std::string& prefix) {
  return std::filesystem::temp_directory_path() / (prefix + std::to_string(getpid()));
}

// frugal-sim on this scenario text, writing its run directory to dir.
auto Run(const char* toml, const std::string& file_name, const std::filesystem::path& dir) {
  auto c = ParseSimConfig(toml, file_name, {});
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  RunOptions opts;
  opts.out_dir = dir.string();
  return RunSimulation(*c, opts);
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("frugal-sim with [prune] and [widths] prices each participation at the FLOPs of the shape it trained") {
    const std::filesystem::path dir = RunDir("frugal-pruned-sim-");
    auto r = Run(kPruned, "frugal-models-pruned.toml", dir);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());

    // The schedule: round 1 trains the 2NN, round 2 the 75% shape, rounds 3-4 the 50% one.
    const std::vector<uint32_t> full{784, 200, 200, 10};
    auto shape = [&](double fraction) {
      const std::vector<uint32_t> w = WidthsForFlopsFraction(full, fraction);
      return std::vector<uint32_t>{784, w[0], w[1], 10};
    };
    const std::vector<std::vector<uint32_t>> by_round{full, full, shape(0.75), shape(0.5), shape(0.5)};
    std::map<std::string, double> examples;
    for (const auto& row : ReadCsv(dir / "clients.csv")) examples[row.at("client_id")] = std::stod(row.at("examples"));
    size_t narrow = 0, wide = 0;
    for (const auto& row : ReadCsv(dir / "ledger.csv")) {
      if (row.at("outcome") != "participated") continue;
      const auto round = static_cast<size_t>(std::stoul(row.at("round")));
      std::vector<uint32_t> trained = by_round.at(round);
      if (row.at("device") == "phone-low") {
        trained = NestedSubnetwork(trained, 0.5).NewSizes();
        ++narrow;
      } else {
        ++wide;
      }
      INFO("round ", round, " client ", row.at("client_id"), " ", row.at("device"));
      // One epoch: FLOPs = examples x the trained shape's training FLOPs per example, exactly.
      CHECK(std::stod(row.at("flops")) == doctest::Approx(examples.at(row.at("client_id")) * MlpTrainFlops(trained))
                                              .epsilon(1e-12));
    }
    CHECK(narrow > 0);
    CHECK(wide > 0);
    const auto& m = r->summary.extra_metrics;
    REQUIRE(m.count("train_flops_fraction_final") == 1);
    CHECK(m.at("train_flops_fraction_final") == doctest::Approx(MlpTrainFlops(shape(0.5)) / MlpTrainFlops(full)));
    CHECK(m.at("train_flops_fraction_final") <= 0.5);
    CHECK(r->final_model.size() == MlpParamCount(shape(0.5)));
    // Smaller models, smaller updates: 2% of fewer coordinates.
    CHECK(r->rounds.back().bytes_up < r->rounds.front().bytes_up);
    CHECK(r->summary.final_accuracy > 0.2);  // it still learns (chance is 0.1)
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("frugal-sim with widths.rolling trains round r's window (units from r mod n), not the first units") {
    const std::filesystem::path dir = RunDir("frugal-rolling-sim-");
    auto fixed = Run(kNarrowOnly, "frugal-models-narrow.toml", dir);
    REQUIRE_MESSAGE(fixed.ok(), fixed.status().ToString());
    const std::string rolling_toml = std::string(kNarrowOnly) + "rolling = true\n";  // into [widths]
    auto rolling = Run(rolling_toml.c_str(), "frugal-models-narrow.toml", dir);
    REQUIRE_MESSAGE(rolling.ok(), rolling.status().ToString());
    const std::vector<uint32_t> sizes{784, 200, 200, 10};
    REQUIRE(fixed->final_model.size() == MlpParamCount(sizes));
    REQUIRE(rolling->final_model.size() == fixed->final_model.size());
    // Fixed slices train units 0-99 in both rounds; rolling windows 1-100 (round 1) and 2-101 (round 2).
    std::vector<int> in_fixed(fixed->final_model.size(), 0), in_rolling(fixed->final_model.size(), 0);
    const NestedNetwork first = MakeNestedNetwork(sizes, 0.5);
    for (uint32_t j : first.map) in_fixed[j] = 1;
    for (uint32_t round : {1u, 2u}) {
      const NestedNetwork window = MakeNestedNetwork(sizes, 0.5, round);
      for (uint32_t j : window.map) in_rolling[j] = 1;
    }
    // Same seed, same initial model: what neither trained is equal; what only one trained differs somewhere.
    size_t untrained = 0, differ_fixed_only = 0, differ_rolling_only = 0;
    for (size_t j = 0; j < in_fixed.size(); ++j) {
      const bool differ = fixed->final_model[j] != rolling->final_model[j];
      if (!in_fixed[j] && !in_rolling[j]) {
        ++untrained;
        CHECK(!differ);
      }
      if (in_fixed[j] && !in_rolling[j] && differ) ++differ_fixed_only;
      if (!in_fixed[j] && in_rolling[j] && differ) ++differ_rolling_only;
    }
    CHECK(untrained > 0);
    CHECK(differ_fixed_only > 0);
    CHECK(differ_rolling_only > 0);
    // The window's size is the slice's: every participation is priced at the sub-network's FLOPs (one epoch).
    std::map<std::string, double> examples;
    for (const auto& row : ReadCsv(dir / "clients.csv")) examples[row.at("client_id")] = std::stod(row.at("examples"));
    size_t rows = 0;
    for (const auto& row : ReadCsv(dir / "ledger.csv")) {
      if (row.at("outcome") != "participated") continue;
      CHECK(std::stod(row.at("flops")) ==
            doctest::Approx(examples.at(row.at("client_id")) * MlpTrainFlops(NestedSubnetwork(sizes, 0.5).NewSizes()))
                .epsilon(1e-12));
      ++rows;
    }
    CHECK(rows > 0);
    std::filesystem::remove_all(dir);
  }

  // Slow tier (tests/model/CMakeLists.txt): three CNN rounds take seconds on 2 cores.
  TEST_CASE("frugal-sim with [prune] on the CNN trains fewer channels after each step and prices them exactly") {
    const std::filesystem::path dir = RunDir("frugal-pruned-cnn-sim-");
    auto r = Run(kPrunedCnn, "frugal-models-pruned-cnn.toml", dir);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());

    // Round 1 trains the whole CNN, round 2 the 75% shape, round 3 the 50% one.
    const std::vector<uint32_t> full{1, 32, 64, 512, 10};
    const CnnGeometry geometry{28, 28, 5};
    auto shape = [&](double fraction) {
      const std::vector<uint32_t> w = WidthsForFlopsFraction(full, fraction, geometry);
      return std::vector<uint32_t>{1, w[0], w[1], w[2], 10};
    };
    const std::vector<std::vector<uint32_t>> by_round{full, full, shape(0.75), shape(0.5)};
    size_t rows = 0;
    for (const auto& row : ReadCsv(dir / "ledger.csv")) {
      if (row.at("outcome") != "participated") continue;
      const auto round = static_cast<size_t>(std::stoul(row.at("round")));
      INFO("round ", round, " client ", row.at("client_id"));
      // One epoch of 16 examples at the trained shape's training FLOPs per example, exactly.
      CHECK(std::stod(row.at("flops")) ==
            doctest::Approx(16.0 * ShapeTrainFlops(by_round.at(round), geometry)).epsilon(1e-12));
      ++rows;
    }
    CHECK(rows == 9);
    const auto& m = r->summary.extra_metrics;
    REQUIRE(m.count("train_flops_fraction_final") == 1);
    CHECK(m.at("train_flops_fraction_final") ==
          doctest::Approx(ShapeTrainFlops(shape(0.5), geometry) / ShapeTrainFlops(full, geometry)));
    CHECK(m.at("train_flops_fraction_final") <= 0.5);
    CHECK(r->final_model.size() == ShapeParamCount(shape(0.5), geometry));
    CHECK(r->rounds.back().bytes_up < r->rounds.front().bytes_up);
    std::filesystem::remove_all(dir);
  }
}

}  // namespace frugal::sim
