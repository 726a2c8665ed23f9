// Frugal's own seeded random numbers. std:: distributions differ between
// standard libraries, so every draw that decides a result (partitions, init,
// shuffles, selection, stochastic rounding) goes through this file. For a seed,
// the integer and uniform draws (NextU64, Uniform, UniformFloat, UniformInt,
// Shuffle, SplitMix64, DeriveSeed) are exact integer arithmetic and give the
// same bits on every platform (known-answer tests in tests/core/random_test.cpp).
// Normal and Gamma call libm (log, sqrt, cos, pow), which is not correctly
// rounded: they repeat bit for bit on the same libm, and may differ in the last
// bits elsewhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace frugal {

// SplitMix64: mixes a seed (or a seed plus a stream id) into a well-spread 64-bit value.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Derives an independent seed for sub-stream `stream` (a client id, a round, ...).
inline uint64_t DeriveSeed(uint64_t seed, uint64_t stream) {
  return SplitMix64(SplitMix64(seed) ^ SplitMix64(stream + 0x632BE59BD9B4E019ULL));
}

// xoshiro256** (Blackman & Vigna). Not thread-safe; give each thread its own.
class Rng {
 public:
  explicit Rng(uint64_t seed);

  uint64_t NextU64();
  // Uniform in [0, 1) with 53 random bits.
  double Uniform();
  // Uniform in [0, 1) with 24 random bits.
  float UniformFloat() { return static_cast<float>(NextU64() >> 40) * 0x1.0p-24f; }
  // Uniform integer in [0, n), n > 0, unbiased (Lemire's method).
  uint64_t UniformInt(uint64_t n);
  // Standard normal (Box-Muller, no cached second value so draws stay independent of call order).
  double Normal();
  // Gamma(shape, 1), shape > 0 (Marsaglia & Tsang).
  double Gamma(double shape);
  // Fisher-Yates shuffle.
  template <typename T>
  void Shuffle(std::span<T> v) {
    for (size_t i = v.size(); i > 1; --i) {
      size_t j = static_cast<size_t>(UniformInt(i));
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  uint64_t s_[4];
};

}  // namespace frugal
