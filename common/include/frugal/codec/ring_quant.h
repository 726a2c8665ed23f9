// Quantization of an update's values on the round's shared support into the
// ring Z_2^b, where secure aggregation masks and sums them: clip each value to
// [-clip, clip], scale so that the sum of `max_summands` clients cannot wrap,
// round stochastically (unbiased), and keep what clipping, rounding and the
// support left out in the client's error-feedback residual. The server decodes
// the unmasked ring sum back to floats, checking the headroom.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

struct RingQuantConfig {
  int bits = 32;                 // ring Z_2^bits, 8 <= bits <= 62
  float clip = 0.1f;             // each value is clipped to [-clip, clip] before scaling
  uint32_t max_summands = 1024;  // the sum of this many clients fits without wrapping
};

// InvalidArgument naming the field when bits, clip or max_summands is out of
// range, or when fewer than 2 levels per unit of clip remain.
Status ValidateRingQuantConfig(const RingQuantConfig& cfg);

// The largest |level| one client may send: floor((2^(bits-1) - 1) / max_summands).
int64_t RingMaxLevel(const RingQuantConfig& cfg);
// Levels per unit: a value x is sent as round(x * RingScale) (stochastically).
double RingScale(const RingQuantConfig& cfg);

// acc = update + residual (residual may be empty: no error feedback); for each
// support coordinate i (ascending, < update.size()), clips acc[i], scales and
// rounds stochastically with draws from `rounding_seed`, and returns the levels
// as ring elements (two's complement mod 2^bits), one per support entry. The
// residual (if given) becomes acc minus what was sent, so coordinates off the
// support keep all of acc. Thread-compatible. InvalidArgument on a bad config,
// sizes that do not match, a support index out of range, or non-finite input.
Result<std::vector<uint64_t>> RingQuantize(std::span<const float> update, std::span<const uint32_t> support,
                                           const RingQuantConfig& cfg, uint64_t rounding_seed,
                                           std::span<float> residual);

// The float sum of `summands` clients' values from their ring sum (one ring
// element per support entry). FailedPrecondition when summands exceeds
// max_summands (the sum may have wrapped); DataLoss when an element lies
// outside what `summands` clients can produce (a client sent levels beyond the
// clip, or the unmasking went wrong): the sum is refused, never wrapped.
Result<std::vector<double>> RingDecodeSum(std::span<const uint64_t> ring_sum, uint32_t summands,
                                          const RingQuantConfig& cfg);

// b-bit packing of ring elements (little-endian bit order), ceil(n*bits/8)
// bytes: what a masked vector costs on the wire.
std::vector<uint8_t> PackRing(std::span<const uint64_t> values, int bits);
// InvalidArgument when the size is not exactly ceil(count*bits/8) bytes or the
// padding bits of the last byte are not zero.
Result<std::vector<uint64_t>> UnpackRing(std::span<const uint8_t> bytes, size_t count, int bits);

}  // namespace frugal
