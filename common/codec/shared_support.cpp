#include "frugal/codec/shared_support.h"

#include <algorithm>
#include <string>

#include "frugal/codec/frame.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {

namespace {
// Keeps the support's stream apart from every other use of a round's seed.
constexpr uint64_t kSupportStream = 0x5348415245445355ULL;  // "SHAREDSU"
}  // namespace

Result<std::vector<uint32_t>> SharedSupportOfSize(uint64_t seed, size_t dim, size_t k) {
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("shared support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  if (k == 0 || k > dim) {
    return InvalidArgumentError("shared support: " + std::to_string(k) + " coordinates of " + std::to_string(dim));
  }
  // Floyd's sampling: k draws give a uniform k-subset, O(k) work and a bitmap of
  // dim bits; the set (not the draw order) is what counts, and it is sorted below.
  Rng rng(DeriveSeed(seed, kSupportStream));
  std::vector<bool> taken(dim, false);
  std::vector<uint32_t> out;
  out.reserve(k);
  for (size_t j = dim - k; j < dim; ++j) {
    const auto t = static_cast<size_t>(rng.UniformInt(j + 1));
    const size_t pick = taken[t] ? j : t;
    taken[pick] = true;
    out.push_back(static_cast<uint32_t>(pick));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<uint32_t>> SharedSupport(uint64_t seed, size_t dim, double density) {
  if (!(density > 0.0 && density <= 1.0)) {
    return InvalidArgumentError("shared support: density " + std::to_string(density) + " outside (0, 1]");
  }
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("shared support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  return SharedSupportOfSize(seed, dim, UplinkKeepCount(density, dim));
}

uint64_t SharedSupportSeed(uint64_t run_seed, uint32_t round) {
  return DeriveSeed(DeriveSeed(run_seed, kSupportStream), round);
}

}  // namespace frugal
