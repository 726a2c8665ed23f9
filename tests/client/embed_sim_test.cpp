// The simulator with an app's own trainer (frugal_embed_simulate, the
// simulator's app-trainer hook): the model moves exactly as the app's
// training dictates (a plain reference: an affine map on every parameter,
// averaged by dense FedAvg), each client gets its own examples of the
// scenario's data, and the embedding example's softmax regression
// (client/examples/embed_example.cpp --simulate) learns the digits data set.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/child_process.h"
#include "data/temp_dir.h"
#include "frugal/client/frugal_embed.h"
#include "frugal/test_source_dir.h"

namespace frugal::client {
namespace {

const std::string kScenario = std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/digits-dir0.5.toml";
const std::string kManifest = std::string(FRUGAL_SOURCE_DIR) + "/sim/scenarios/data/sklearn-digits.toml";
constexpr const char* kDigitsCsv = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// What the affine trainer saw of one client in one round.
struct Seen {
  std::vector<float> start;  // the parameters it was handed
  size_t examples = 0;
  std::vector<int32_t> labels;
  bool features_in_range = true;
};

struct Recorder {
  std::mutex mu;
  std::map<std::pair<uint32_t, uint32_t>, Seen> seen;  // (round, client)
  size_t dim = 0;
};

// Trains by w <- 0.5 w + 1 on every parameter, whatever the data: dense
// FedAvg of such updates is the same map on the global model.
int AffineTrain(void* user, const frugal_client_data* d, float* w, size_t n, const frugal_train_request* r,
                frugal_train_report* out) {
  auto& rec = *static_cast<Recorder*>(user);
  Seen s;
  s.start.assign(w, w + n);
  s.examples = d->num_examples;
  s.labels.assign(d->labels, d->labels + d->num_examples);
  for (size_t i = 0; i < d->num_examples * d->input_dim; ++i) {
    s.features_in_range = s.features_in_range && d->features[i] >= 0 && d->features[i] <= 1;
  }
  for (size_t i = 0; i < n; ++i) w[i] = 0.5f * w[i] + 1.0f;
  out->examples = d->num_examples;
  out->mean_loss = 1.0;
  out->flops = 1e6;
  std::lock_guard lock(rec.mu);
  rec.dim = d->input_dim;
  rec.seen[{r->round, d->client}] = std::move(s);
  return 0;
}

std::vector<std::string> Sets(int rounds) {
  return {"model=\"logreg\"", "pipeline=\"dense\"", "rounds=" + std::to_string(rounds), "population.clients=4",
          "round.clients_per_round=4", "data.dir=\"" + kManifest + "\""};
}

}  // namespace

TEST_SUITE("client") {
  TEST_CASE("the simulator trains every client with the app's trainer, and the model follows it") {
    REQUIRE_MESSAGE(std::ifstream(kDigitsCsv).good(), "install python3-sklearn (scripts/setup.sh)");
    Recorder rec;
    frugal_sim_trainer t{};
    t.struct_size = sizeof t;
    t.user = &rec;
    t.train = AffineTrain;
    const std::vector<std::string> sets = Sets(3);
    std::vector<const char*> argv;
    for (const std::string& s : sets) argv.push_back(s.c_str());
    char error[512] = "";
    REQUIRE_MESSAGE(frugal_embed_simulate(kScenario.c_str(), argv.data(), argv.size(), nullptr, &t, error,
                                          sizeof error) == 0,
                    error);
    CHECK(rec.dim == 64);
    REQUIRE(rec.seen.size() == 12);  // 4 clients x 3 rounds
    // Round 1: every client starts from the same model; its examples are its own.
    size_t examples = 0;
    for (uint32_t c = 0; c < 4; ++c) REQUIRE(rec.seen.count({1, c}) == 1);
    const std::vector<float>& first = rec.seen[{1, 0}].start;
    CHECK(first.size() == 64 * 10 + 10);  // logreg: 64 x 10 weights, 10 biases
    for (uint32_t c = 0; c < 4; ++c) {
      const Seen& s = rec.seen[{1, c}];
      CHECK(s.start == first);
      CHECK(s.examples > 0);
      CHECK(s.features_in_range);
      for (int32_t y : s.labels) CHECK((y >= 0 && y < 10));
      examples += s.examples;
      CHECK(rec.seen[{3, c}].labels == s.labels);  // the same examples every round
    }
    CHECK(examples == 1438);  // the manifest's training rows, shared out
    // Rounds 2 and 3 start from 0.5 x the previous start + 1: the app's training, averaged.
    for (uint32_t r = 2; r <= 3; ++r) {
      const std::vector<float>& prev = rec.seen[{r - 1, 0}].start;
      for (uint32_t c = 0; c < 4; ++c) {
        const std::vector<float>& now = rec.seen[{r, c}].start;
        REQUIRE(now.size() == prev.size());
        for (size_t i = 0; i < now.size(); ++i) CHECK(now[i] == doctest::Approx(0.5 * prev[i] + 1).epsilon(1e-5));
      }
    }
    // A failing app trainer fails the run, with a message naming it.
    t.train = [](void*, const frugal_client_data*, float*, size_t, const frugal_train_request*,
                 frugal_train_report*) { return 7; };
    CHECK(frugal_embed_simulate(kScenario.c_str(), argv.data(), argv.size(), nullptr, &t, error, sizeof error) == 1);
    CHECK(std::string(error).find("returned 7") != std::string::npos);
    CHECK(frugal_embed_simulate("", nullptr, 0, nullptr, &t, error, sizeof error) == 2);
  }

  TEST_CASE("the embedding example's own training runs through the simulator and learns the digits") {
    REQUIRE_MESSAGE(std::ifstream(kDigitsCsv).good(), "install python3-sklearn (scripts/setup.sh)");
    testing::TempDir dir;
    std::vector<std::string> cmd = {FRUGAL_EMBED_EXAMPLE_BIN, "--simulate", kScenario, "--out", dir.Path("run")};
    for (const std::string& s : Sets(5)) {
      cmd.push_back("--set");
      cmd.push_back(s);
    }
    testing::Process example(cmd, dir.Path("example.log"));
    REQUIRE_MESSAGE(example.Wait(600) == std::optional<int>(0), testing::ReadFile(dir.Path("example.log")));
    std::istringstream rounds(testing::ReadFile(dir.Path("run/rounds.csv")));
    std::string line;
    std::getline(rounds, line);  // header
    std::vector<double> accuracy;
    while (std::getline(rounds, line)) accuracy.push_back(std::stod(line.substr(line.find(',') + 1)));
    REQUIRE(accuracy.size() == 5);
    CHECK(accuracy.back() > 0.8);  // ten classes: chance is 0.1
    CHECK(accuracy.back() > accuracy.front());
  }
}

}  // namespace frugal::client
