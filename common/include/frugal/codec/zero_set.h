// The exact-zero component of the downlink: a set of coordinates the receiver
// sets to exactly 0.0f, after an optional compressed step (an uplink payload)
// applied first. A ternary broadcast step cannot take a weight to zero, so
// whatever the server holds at zero (the trigger scan's pruned inputs) reaches
// clients through this frame, in a chain piece or after a full model. Wire
// layout in docs/codecs.md ("zero set").
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"

namespace frugal {

struct ZeroSetPiece {
  bool has_step = false;
  SparseUpdate step;            // has_step only: added first
  std::vector<uint32_t> zeros;  // ascending, < dim: then set to exactly zero
};

// Frames `step` (an EncodeUplink payload of dimension `dim`, or empty for none)
// followed by `zeros` (strictly increasing, each < dim; Rice-coded as an uplink
// index section is). Fails on unsorted or out-of-range zeros, dim 0 or above
// kMaxCodecDim.
Result<std::vector<uint8_t>> EncodeZeroSet(std::span<const uint8_t> step, std::span<const uint32_t> zeros,
                                           uint32_t dim);

// Whether `bytes` is framed as a zero set (magic and codec id only; decode to validate).
bool IsZeroSet(std::span<const uint8_t> bytes);

// Decodes and validates a zero set of dimension expected_dim (frame, checksum,
// step, index section, no trailing bytes). Never reads outside `bytes`; every
// defect is an Error naming it.
Result<ZeroSetPiece> DecodeZeroSet(std::span<const uint8_t> bytes, uint32_t expected_dim);

// A broadcast step as the chain carries it: an uplink payload, or a zero set
// with a step. The step's update (empty for a zero set without one); *zeros,
// if non-null, receives the coordinates to zero afterwards (cleared for a
// plain step).
Result<SparseUpdate> DecodeBroadcastStep(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                         std::vector<uint32_t>* zeros = nullptr);

// Applies a decoded piece to `model` (size checked by the decoder): step, then zeros.
void ApplyZeroSetPiece(const ZeroSetPiece& piece, std::span<float> model);

}  // namespace frugal
