// The index-cost claim of docs/codecs.md on real updates: a short deterministic
// training run on Fashion-MNIST (the trainer and RunClientTask, top-k with error
// feedback), every update's index section measured from the bytes the uplink
// encoder wrote. Synthetic uniform positions hide what matters here: kept
// positions cluster by layer and by input pixel.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/round/client_task.h"

namespace frugal {
namespace {

struct Measured {
  double new_bits = 0;    // bits per index of the section the uplink encoder wrote
  double old_bits = 0;    // bits per index of plain Rice (the version-1 coder), encoded
  double bound_bits = 0;  // log2 C(d, k) / k
};

// Two rounds of `clients` clients with 300 examples each, error feedback carried
// between rounds, FedAvg of the decoded updates in between.
std::vector<Measured> RecordUpdates(const char* model_name, double density, uint32_t clients) {
  std::vector<uint32_t> rows(300 * clients);
  for (uint32_t i = 0; i < rows.size(); ++i) rows[i] = i;
  auto data = LoadFashionMnistRows(Split::kTrain, rows);
  REQUIRE(data.ok());
  auto model = MakeModel(model_name, data->num_features, data->num_classes);
  REQUIRE(model.ok());
  auto ws = (*model)->MakeWorkspace();
  std::vector<float> global((*model)->num_params());
  (*model)->InitParams(global, 1);
  const auto d = static_cast<uint32_t>(global.size());
  UplinkConfig uc;
  uc.density = density;
  TrainConfig tc;
  tc.epochs = 1;
  tc.learning_rate = 0.05f;
  std::vector<std::vector<float>> residual(clients, std::vector<float>(d, 0.0f));
  std::vector<float> scratch, sum(d);
  std::vector<Measured> out;
  for (uint64_t round = 1; round <= 2; ++round) {
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (uint32_t c = 0; c < clients; ++c) {
      const std::span<const uint32_t> mine(rows.data() + 300 * c, 300);
      tc.seed = DeriveSeed(round, c);
      auto task = RunClientTask(**model, global, *data, mine, tc, uc, residual[c], *ws, scratch);
      REQUIRE(task.ok());
      auto info = InspectUplink(task->update, d);
      auto u = DecodeUplink(task->update, d);
      REQUIRE((info.ok() && u.ok()));
      for (size_t j = 0; j < u->indices.size(); ++j) sum[u->indices[j]] += u->values[j];
      const double k = static_cast<double>(u->indices.size());
      auto rice = EncodeRiceIndices(u->indices, d, ChooseRiceParameter(u->indices, d));
      REQUIRE(rice.ok());
      out.push_back({8.0 * static_cast<double>(info->index_bytes) / k, 8.0 * static_cast<double>(rice->size()) / k,
                     Log2Binomial(d, k) / k});
    }
    for (uint32_t i = 0; i < d; ++i) global[i] += sum[i] / static_cast<float>(clients);
  }
  return out;
}

TEST_SUITE("codec") {
  TEST_CASE("on real 2NN and logreg updates the index section costs at most 2% over log2 C(d,k)/k per index") {
    for (const char* name : {"mlp", "logreg"}) {
      for (double density : {0.01, 0.02, 0.1}) {
        const std::vector<Measured> m = RecordUpdates(name, density, 4);
        int old_past = 0;
        for (const Measured& x : m) {
          INFO(std::string(name) << " density " << density << ": " << x.new_bits << " bits per index, plain Rice "
                    << x.old_bits << ", bound " << x.bound_bits);
          CHECK(x.new_bits <= 1.02 * x.bound_bits);
          CHECK(x.new_bits <= x.old_bits);
          old_past += x.old_bits > 1.02 * x.bound_bits;
        }
        // What this test guards against: the version-1 coder (plain Rice, one parameter)
        // is past 2% on these same updates.
        if (std::string(name) == "mlp" && density == 0.02) CHECK(2 * old_past >= static_cast<int>(m.size()));
      }
    }
  }
}

}  // namespace
}  // namespace frugal
