// Seeded client selection for a round: uniform without replacement among the
// clients that are available, reproducible for (seed, round).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace frugal {

// Returns min(count, available.size()) distinct ids drawn uniformly from
// `available`, sorted ascending so downstream work has a canonical order.
std::vector<uint32_t> SelectClients(std::span<const uint32_t> available, size_t count, uint64_t seed);

}  // namespace frugal
