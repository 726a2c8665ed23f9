// A data-independent uplink support: the k coordinates every client of a round
// sends, drawn from a public per-round seed the server announces. Since the set
// depends on nothing but (seed, dim, k), the server knows it and no index goes
// on the wire; and it reveals nothing about any client's data, which a top-k
// index set does (secure aggregation and DP need both properties).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// The k = UplinkKeepCount(density, dim) coordinates of the round's shared
// support, ascending and distinct, each < dim. The same bits on every platform
// for the same arguments (Frugal's own Rng, integer draws only). Pure function,
// thread-safe. InvalidArgument when dim is 0 or above kMaxCodecDim, or density
// is outside (0, 1].
Result<std::vector<uint32_t>> SharedSupport(uint64_t seed, size_t dim, double density);

// The same for an explicit count 1 <= k <= dim.
Result<std::vector<uint32_t>> SharedSupportOfSize(uint64_t seed, size_t dim, size_t k);

// The public seed of a round's support, derived from the run's seed and the
// round number (the coordinator announces it; the simulator derives the same).
uint64_t SharedSupportSeed(uint64_t run_seed, uint32_t round);

}  // namespace frugal
