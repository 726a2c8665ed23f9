// Shared helpers for the codec tests: seeded random vectors and error-message checks.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/core/status.h"

namespace frugal::codec_test {

// Synthetic Gaussian vector: codec tests need controlled magnitudes, not a trained model.
inline std::vector<float> Gaussian(size_t n, uint64_t seed, double sigma = 1.0) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(sigma * rng.Normal());
  return v;
}

// The message of a failed Result/Status, or "" when it succeeded.
template <typename R>
std::string ErrorMessage(const R& r) {
  return r.ok() ? std::string() : r.error().message();
}

inline bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

inline void PutU32At(std::vector<uint8_t>& p, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// k distinct indices of [0, d) drawn uniformly, in increasing order (Knuth's selection sampling).
inline std::vector<uint32_t> RandomSubset(uint32_t d, uint32_t k, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint32_t> out;
  out.reserve(k);
  uint32_t needed = k;
  for (uint32_t i = 0; i < d && needed > 0; ++i) {
    if (rng.UniformInt(d - i) < needed) {
      out.push_back(i);
      --needed;
    }
  }
  return out;
}

}  // namespace frugal::codec_test
