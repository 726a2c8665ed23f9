// Quantization of an update's values on the round's shared support into the
// ring Z_2^b, where secure aggregation masks and sums them: clip each value to
// [-clip, clip], scale so that the sum of `max_summands` clients cannot wrap,
// round stochastically (unbiased), and keep what clipping, rounding and the
// support left out in the client's error-feedback residual. The server decodes
// the unmasked ring sum back to floats, checking the headroom. Under
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
};

// InvalidArgument naming the field when bits, clip or max_summands is out of
// range, or when no level per client remains (RingMaxLevel < 1).
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
// max_summands (the sum may have wrapped); DataLoss when an element lies
// outside what `summands` clients can produce, plus noise_margin (a client
// sent levels beyond the clip, or the unmasking went wrong): the sum is
// refused, never wrapped.
Result<std::vector<double>> RingDecodeSum(std::span<const uint64_t> ring_sum, uint32_t summands,
                                          const RingQuantConfig& cfg);

// b-bit packing of ring elements (little-endian bit order), ceil(n*bits/8)
// bytes: what a masked vector costs on the wire.
std::vector<uint8_t> PackRing(std::span<const uint64_t> values, int bits);
// InvalidArgument when the size is not exactly ceil(count*bits/8) bytes or the
// padding bits of the last byte are not zero.
Result<std::vector<uint64_t>> UnpackRing(std::span<const uint8_t> bytes, size_t count, int bits);

}  // namespace frugal
