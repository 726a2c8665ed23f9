// Adaptive Rice coding of sorted sparse indices: the gaps of golomb.h split the
// same way (quotient, b remainder bits), but every binary decision is coded by a
// binary range coder with adaptive probabilities, so a run of close indices (one
// layer's kept weights) or a long empty stretch costs what it carries, not what a
// uniform spread would. Long quotients escape to an Elias-gamma code.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// Codes `sorted` (strictly increasing, each < dim, dim <= 2^28) with Rice parameter
// b in [0, kMaxRiceParameter]. The output carries no length and no trailing zero
// bytes; it is the one byte string DecodeAdaptiveRiceIndices accepts for these indices.
Result<std::vector<uint8_t>> EncodeAdaptiveRiceIndices(std::span<const uint32_t> sorted, uint32_t dim, int b);

// Reads exactly `count` indices from `bytes` (count <= dim <= 2^28, b in range) and
// accepts them only if they re-encode to exactly `bytes`: any other byte string for the
// same indices (trailing bytes, non-minimal termination) is refused. Allocates at most
// `count` indices; never reads outside `bytes`; work is O(count * 64) binary decisions.
Result<std::vector<uint32_t>> DecodeAdaptiveRiceIndices(std::span<const uint8_t> bytes, uint32_t count,
                                                        uint32_t dim, int b);

// An uplink index section: Rice parameter b = ChooseRiceParameter(sorted, dim), coded
// adaptive when that is strictly shorter than plain Rice(b), else plain Rice(b).
struct IndexSection {
  int rice_parameter = 0;
  bool adaptive = false;
  std::vector<uint8_t> bytes;
};
// Fails as EncodeAdaptiveRiceIndices does.
Result<IndexSection> EncodeIndexSection(std::span<const uint32_t> sorted, uint32_t dim);
// Decodes either kind strictly; an adaptive section not shorter than plain Rice(b) of the
// same indices is refused (no encoder sends one).
Result<std::vector<uint32_t>> DecodeIndexSection(std::span<const uint8_t> bytes, uint32_t count, uint32_t dim,
                                                 int b, bool adaptive);

}  // namespace frugal
