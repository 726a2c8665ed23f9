// The agent's local Fashion-MNIST share is the simulator's: the same
// PartitionForClient on the run seed's partition stream, so a deployed client
// trains on exactly the examples its simulated twin does.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "frugal/client/agent.h"
#include "frugal/core/streams.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"

namespace frugal::client {

TEST_SUITE("client") {
  TEST_CASE("a client's fmnist-partition share is the simulator's PartitionForClient, holdout included") {
    auto train = LoadFashionMnist(Split::kTrain);
    REQUIRE(train.ok());
    DataConfig cfg;
    cfg.source = "fmnist-partition";
    cfg.partition = "dirichlet";
    cfg.clients = 10;
    cfg.index = 3;
    cfg.alpha = 0.5;
    cfg.seed = 5;
    cfg.holdout = 0.1;
    auto local = LoadLocalData(cfg);
    REQUIRE_MESSAGE(local.ok(), local.error().ToString());
    const PartitionSpec spec{.scheme = "dirichlet", .clients = 10, .alpha = 0.5, .shards_per_client = 2, .seed = 5,
                             .holdout = 0.1};
    auto mine = PartitionForClient(train->labels, train->num_classes, spec, 3);
    REQUIRE(mine.ok());
    REQUIRE(local->indices.size() == mine->train.size());
    REQUIRE(local->holdout.size() == mine->holdout.size());
    const size_t d = train->num_features;
    auto same_row = [&](uint32_t local_row, uint32_t train_row) {
      return local->data.labels[local_row] == train->labels[train_row] &&
             std::memcmp(local->data.codes.data() + local_row * d, train->codes.data() + train_row * d, d) == 0;
    };
    for (size_t k = 0; k < mine->train.size(); ++k) CHECK(same_row(local->indices[k], mine->train[k]));
    for (size_t k = 0; k < mine->holdout.size(); ++k) CHECK(same_row(local->holdout[k], mine->holdout[k]));
    // Not the raw seed's split (what the agent used before: the simulator's clients then trained on other data).
    auto raw = PartitionDirichlet(train->labels, 10, 10, 0.5, 5);
    REQUIRE(raw.ok());
    CHECK((*raw)[3].size() != mine->train.size() + mine->holdout.size());
  }
}

}  // namespace frugal::client
