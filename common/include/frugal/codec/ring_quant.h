// Quantization of an update's values on the round's shared support into the
// ring Z_2^b, where secure aggregation masks and sums them: clip each value to
// [-clip, clip], scale so that the sum of `max_summands` clients cannot wrap,
// round stochastically (unbiased), and keep what clipping, rounding and the
// support left out in the client's error-feedback residual. The server decodes
// the unmasked ring sum back to floats, checking the headroom; or, with
// modular clipping, reads a ring smaller than the round's worst-case sum as
// its centered residue and accepts the rare wrap-arounds. Under
// distributed DP a client also clips the support values' L2 norm and adds its
// share of Skellam noise to every level (docs/privacy.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/privacy/noise.h"

namespace frugal {

struct RingQuantConfig {
  int bits = 32;                 // ring Z_2^bits, 4 <= bits <= 62
  float clip = 0.1f;             // each value is clipped to [-clip, clip] before scaling
  uint32_t max_summands = 1024;  // the sum of this many clients fits without wrapping
  // Distributed DP (privacy.mode = "distributed"; frugal/privacy/dp.h plans
  // them): l2_clip > 0 scales the support values to L2 norm at most l2_clip
  // before the per-value clip; noise_mu > 0 adds Skellam Sk(noise_mu, noise_mu)
  // levels to every entry; noise_margin levels of the ring are kept for the
  // summed noise, beyond what max_summands clients' values can reach.
  double l2_clip = 0;
  double noise_mu = 0;
  int64_t noise_margin = 0;
  // Modular clipping (secure.modular_clip; Kairouz, Liu & Steinke 2021): the
  // server decodes a sum of more than max_summands clients as its centered
  // residue mod 2^bits, in [-2^(bits-1), 2^(bits-1) - 1], instead of refusing
  // it. A coordinate whose true sum leaves that range comes back wrapped (off
  // by a multiple of 2^bits levels); the server cannot tell which ones did.
  // Per-client levels are unchanged: they still come from max_summands. Not
  // with distributed DP noise (ValidateRingQuantConfig refuses it).
  bool modular = false;
};

// InvalidArgument naming the field when bits, clip or max_summands is out of
// range, when no level per client remains (RingMaxLevel < 1), or when modular
// is set together with distributed DP noise (noise_mu or noise_margin).
Status ValidateRingQuantConfig(const RingQuantConfig& cfg);

// The largest |level| one client's value may take:
// floor((2^(bits-1) - 1 - noise_margin) / max_summands).
int64_t RingMaxLevel(const RingQuantConfig& cfg);
// Levels per unit: a value x is sent as round(x * RingScale) (stochastically).
double RingScale(const RingQuantConfig& cfg);

// acc = update + residual (residual may be empty: no error feedback); for each
// support coordinate i (ascending, < update.size()), clips acc[i], scales and
// rounds stochastically with draws from `rounding_seed`, and returns the levels
// as ring elements (two's complement mod 2^bits), one per support entry. The
// residual (if given) becomes acc minus what was sent, so coordinates off the
// support keep all of acc. With cfg.l2_clip the support values are first
// scaled to that L2 norm; with cfg.noise_mu each level gets Skellam noise from
// the AES-CTR stream under `noise_key` (required then), which the residual
// never sees. Thread-compatible. InvalidArgument on a bad config, sizes that
// do not match, a support index out of range, non-finite input, or noise
// without a key.
Result<std::vector<uint64_t>> RingQuantize(std::span<const float> update, std::span<const uint32_t> support,
                                           const RingQuantConfig& cfg, uint64_t rounding_seed,
                                           std::span<float> residual,
                                           const privacy::NoiseKey* noise_key = nullptr);

// The float sum of `summands` clients' values from their ring sum (one ring
// element per support entry). FailedPrecondition when summands exceeds
// max_summands (the sum may have wrapped) unless cfg.modular; DataLoss when
// an element lies outside what `summands` clients can produce, plus
// noise_margin (a client sent levels beyond the clip, or the unmasking went
// wrong): the sum is refused, never wrapped. With cfg.modular and more
// summands than the ring holds every residue is a possible sum: each element
// is read as its centered residue, [-2^(bits-1), 2^(bits-1) - 1] levels.
Result<std::vector<double>> RingDecodeSum(std::span<const uint64_t> ring_sum, uint32_t summands,
                                          const RingQuantConfig& cfg);

// How the true integer sums of the clients' ring inputs sit against the
// ring's centered range: each input element is read as its centered residue in
// Z_2^bits (the client's level while |level| < 2^(bits-1)) and summed in int64.
// `wrapped` counts the entries whose true sum lies outside [-2^(bits-1),
// 2^(bits-1) - 1] (their ring sum decodes to another value),
// `wrapped_one_bit_less` those outside the centered range of Z_2^(bits-1)
// (what a ring one bit smaller would wrap). It needs the inputs themselves, so
// only a party holding all of them (the simulator, a test) can count; SecAgg+'s
// server cannot.
struct RingWrapCount {
  uint64_t entries = 0;
  uint64_t wrapped = 0;
  uint64_t wrapped_one_bit_less = 0;
  // Totals over several counts (rounds of a run).
  RingWrapCount& operator+=(const RingWrapCount& o) {
    entries += o.entries;
    wrapped += o.wrapped;
    wrapped_one_bit_less += o.wrapped_one_bit_less;
    return *this;
  }
};
class RingWrapCounter {
 public:
  // InvalidArgument when bits is outside 2..62.
  static Result<RingWrapCounter> Create(int bits, size_t entries);
  // Adds one client's input; InvalidArgument when its size differs from
  // `entries` or an element is not in Z_2^bits (nothing is added then).
  Status Add(std::span<const uint64_t> input);
  // The counts over every entry, or with `only` (one flag per entry, else
  // InvalidArgument) over the entries whose flag is nonzero.
  RingWrapCount Count() const;
  Result<RingWrapCount> Count(std::span<const uint8_t> only) const;

 private:
  RingWrapCounter(int bits, size_t entries) : bits_(bits), sum_(entries, 0) {}
  int bits_;
  std::vector<int64_t> sum_;
};

// b-bit packing of ring elements (little-endian bit order), ceil(n*bits/8)
// bytes: what a masked vector costs on the wire.
std::vector<uint8_t> PackRing(std::span<const uint64_t> values, int bits);
// InvalidArgument when the size is not exactly ceil(count*bits/8) bytes or the
// padding bits of the last byte are not zero.
Result<std::vector<uint64_t>> UnpackRing(std::span<const uint8_t> bytes, size_t count, int bits);

}  // namespace frugal
