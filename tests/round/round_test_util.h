// Helpers shared by the round tests.
#pragma once

#include <cstdint>
#include <vector>

#include "frugal/core/random.h"

namespace frugal::round_test {

// n standard normal values times `scale`, from `seed`.
inline std::vector<float> RandomVector(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal()) * scale;
  return v;
}

}  // namespace frugal::round_test
