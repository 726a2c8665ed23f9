// DP noise from a cryptographically secure stream: the AES-256-CTR keystream
// under a 256-bit key, turned into uniforms, Gaussians (Box-Muller), Poisson
// and Skellam draws. Whoever lacks the key cannot predict or subtract the
// noise, unlike a seeded xoshiro or std:: engine whose state is its seed. The
// core holds no entropy source: a front end passes the key in (RAND_bytes in
// the coordinator and the agent; a key derived from the run's seed in the
// simulator, so a run repeats).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "frugal/core/status.h"

namespace frugal::privacy {

using NoiseKey = std::array<uint8_t, 32>;

// The largest Poisson (and Skellam) mean the sampler takes: its draws stay
// integers a double holds exactly and far inside int64. Whoever sets a mean
// refuses a larger one with an error (ValidateRingQuantConfig, PlanDistributedRing).
inline constexpr double kMaxPoissonMean = 0x1p52;

// Poisson(mu) from the uniforms in [0, 1) that `uniform` returns, by the
// algorithm NoiseStream::Poisson uses (which is this over its own stream); a
// seam for tests that need a chosen uniform, such as an exact 0.
int64_t PoissonFromUniforms(double mu, const std::function<double()>& uniform);

// Where a round's noise key comes from; empty: derived from a seed (SeededNoiseKey).
using NoiseKeySource = std::function<Result<NoiseKey>(uint32_t round)>;

// SHA-256 of a fixed label, `seed`, `stream` and `round`: the simulator's
// reproducible key (it protects nothing against whoever knows the seed).
NoiseKey SeededNoiseKey(uint64_t seed, uint64_t stream, uint32_t round);

// The AES-256-CTR keystream (counter block 0 first) under one key, read as
// little-endian 64-bit words. A key must key one stream only. Not thread-safe.
class NoiseStream {
 public:
  // Internal when OpenSSL cannot set up the cipher.
  static Result<NoiseStream> Create(const NoiseKey& key);
  NoiseStream(NoiseStream&&) noexcept;
  NoiseStream& operator=(NoiseStream&&) noexcept;
  ~NoiseStream();

  uint64_t NextU64();
  // Uniform in [0, 1) with 53 random bits.
  double Uniform();
  // Standard normal by Box-Muller (two uniforms per draw, no cached second
  // value), in floating point: see docs/privacy.md on what that leaves open.
  double Normal();
  // Poisson(mu), 0 <= mu <= kMaxPoissonMean (exact: Knuth's product of uniforms
  // below 10, Hörmann's PTRS transformed rejection from 10, as NumPy draws it).
  // A larger mean is drawn at kMaxPoissonMean: callers refuse one before, so
  // this only keeps a bug from overflowing.
  int64_t Poisson(double mu);
  // Skellam Sk(mu, mu) = Poisson(mu) - Poisson(mu): mean 0, variance 2 mu.
  int64_t Skellam(double mu) { return Poisson(mu) - Poisson(mu); }

 private:
  struct Cipher;
  explicit NoiseStream(std::unique_ptr<Cipher> cipher);
  void Refill();

  std::unique_ptr<Cipher> cipher_;
  std::array<uint64_t, 512> buffer_{};
  size_t next_ = 512;
};

}  // namespace frugal::privacy
