// The bytes a client downloads to bring its copy of the global model up to
// date: either a full model (the downlink codec's quantized or fp32 encoding)
// or a chain of the compressed global updates it missed, applied in order.
// A chain reproduces the server's copy bit-exactly; a quantized full model
// leaves the client with the codec's reconstruction, which the client's update
// is then taken relative to, so aggregation stays exact either way.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

enum class ModelPayloadKind : uint8_t { kFull = 1, kChain = 2 };

struct ModelPayloadHeader {
  ModelPayloadKind kind = ModelPayloadKind::kFull;
  uint32_t from_version = 0;  // version the client must hold (0 for kFull)
  uint32_t to_version = 0;    // version the client holds after applying
  uint32_t dim = 0;
  uint32_t pieces = 0;
};

inline constexpr uint32_t kMaxChainPieces = 4096;

// Frames `pieces` (each a codec payload) into one model payload.
std::vector<uint8_t> EncodeModelPayload(const ModelPayloadHeader& header,
                                        std::span<const std::span<const uint8_t>> pieces);

// Validates the framing and returns the header and views of the pieces (into `bytes`).
Result<ModelPayloadHeader> ParseModelPayload(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                             std::vector<std::span<const uint8_t>>* pieces);

// Applies a payload to a client's copy. `held_version` is what the client
// holds (0 = nothing). On success `model` holds version to_version; on error
// `model` is unchanged and the error names what was wrong.
Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim);

}  // namespace frugal
