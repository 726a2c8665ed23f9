// Splits a data set among federated clients: IID, Dirichlet label skew
// (NIID-Bench "noniid-labeldir") and label-sorted shards (McMahan et al. 2017).
// Each returns, per client, the sorted indices of the examples it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

using Partition = std::vector<std::vector<uint32_t>>;

// Every example to exactly one client, client sizes differing by at most one.
// Error (kInvalidArgument) if num_clients == 0.
Result<Partition> PartitionIid(size_t num_examples, size_t num_clients, uint64_t seed);

// Per class, client shares drawn from Dirichlet(alpha); clients already
// holding N/num_clients examples get no more of later classes. Re-drawn (up to
// kDirichletMaxTries times) until every client holds at least
// min(kDirichletMinSize, N/num_clients) examples; if no draw succeeds, the draw
// with the largest smallest client is returned. Every example to exactly one
// client. Errors (kInvalidArgument) name the problem: num_clients == 0,
// alpha <= 0 or not finite, or a label outside [0, num_classes).
inline constexpr size_t kDirichletMinSize = 10;
inline constexpr int kDirichletMaxTries = 1000;
Result<Partition> PartitionDirichlet(std::span<const int32_t> labels, size_t num_classes, size_t num_clients,
                                     double alpha, uint64_t seed);

// Sorts examples by label, cuts them into num_clients*shards_per_client shards
// of equal size (the first N mod shards one larger, so all examples are used)
// and gives each client shards_per_client random shards, re-pairing so that,
// where possible, no client holds two shards of one label. Errors
// (kInvalidArgument): num_clients == 0, shards_per_client == 0, or fewer
// examples than shards.
Result<Partition> PartitionShards(std::span<const int32_t> labels, size_t num_clients, size_t shards_per_client,
                                  uint64_t seed);

// One client's examples split into those it trains on and a local holdout
// (for federated evaluation): ceil(fraction * n) examples, picked by a shuffle
// seeded with `seed`, are held
// out, but always at least one is left to train on. Both parts keep the
// input's order. fraction in [0, 1); 0 holds out nothing.
struct HoldoutSplit {
  std::vector<uint32_t> train;
  std::vector<uint32_t> holdout;
};
HoldoutSplit SplitHoldout(std::span<const uint32_t> examples, double fraction, uint64_t seed);

// How a run splits a data set among its clients. The simulator and the client
// agent both go through PartitionFleet / PartitionForClient, so the same run
// seed gives a client the same examples in simulation and in deployment.
struct PartitionSpec {
  std::string scheme = "iid";     // iid | dirichlet | shards
  size_t clients = 1;
  double alpha = 0.5;             // dirichlet
  size_t shards_per_client = 2;   // shards
  uint64_t seed = 1;              // the run seed; the partition uses its kPartition stream
  double holdout = 0;             // fraction each client keeps out of training (kHoldout stream, by index)
};

// Every client's examples (before any holdout). Errors name an unknown scheme or a bad argument.
Result<Partition> PartitionFleet(std::span<const int32_t> labels, size_t num_classes, const PartitionSpec& spec);

// Client `index`'s share of PartitionFleet, in the partition's order, split by
// spec.holdout into what it trains on and what it holds out.
Result<HoldoutSplit> PartitionForClient(std::span<const int32_t> labels, size_t num_classes,
                                        const PartitionSpec& spec, size_t index);
// The holdout split of client `index`'s examples (identity when spec.holdout is 0).
HoldoutSplit SplitClientHoldout(std::span<const uint32_t> examples, const PartitionSpec& spec, size_t index);

}  // namespace frugal
