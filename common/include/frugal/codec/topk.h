// Top-k selection by magnitude for sparse uplink updates: an exact reference
// (nth_element over all |x|) and a sampled-threshold path that returns the same
// set while sorting only a small candidate list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal {

// Indices (increasing) of the min(k, non-zeros) entries of largest |x|; among equal
// magnitudes the lower index wins, zeros are never selected. x must be finite.
std::vector<uint32_t> TopKExact(std::span<const float> x, size_t k);
// Same result as TopKExact; estimates the threshold from a seeded sample of |x|, keeps the
// candidates above it and selects among those, falling back to TopKExact if too few pass.
std::vector<uint32_t> TopKSampled(std::span<const float> x, size_t k, uint64_t seed = 0);
// Block top-k: x cut into blocks of `block` consecutive entries (the last may be shorter),
// each scored by the sum of its |x| (in double, index order); the min(blocks, non-zero
// scores) best blocks, equal scores to the lower block, and of those the non-zero entries,
// increasing. block = 1 is TopKExact(x, blocks). block must be >= 1; x finite.
std::vector<uint32_t> TopKBlocks(std::span<const float> x, size_t block, size_t blocks);

}  // namespace frugal
