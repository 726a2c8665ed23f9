// The bytes a client downloads to bring its copy of the global model up to
// date: either a full model (the downlink codec's quantized or fp32 encoding)
// or a chain of the compressed global updates it missed, applied in order, or
// that chain merged into one lossless piece (codec/downlink.h EncodeMergedSteps).
// A chain reproduces the server's copy bit-exactly; a quantized full model
// leaves the client with the codec's reconstruction, which the client's update
// is then taken relative to, so aggregation stays exact either way.
// A pruned MLP's payloads carry shape changes (frugal/model/prune.h): a chain
// piece may be one (the client's copy shrinks there), and a full model is
// preceded by the pruned shape relative to the unpruned one.
// Coordinates the server holds at exactly zero (the trigger scan's pruned
// inputs) travel as zero sets (frugal/codec/zero_set.h): a chain piece may be
// a step followed by zeros, and a full model may be followed by its zeros, so
// a client's copy is exactly zero there however it got it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "frugal/codec/downlink.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"
#include "frugal/model/prune.h"

namespace frugal {

// kMerged: one piece holding the steps from_version -> to_version
// (EncodeMergedSteps), applied in order exactly as the chain's pieces would be.
enum class ModelPayloadKind : uint8_t { kFull = 1, kChain = 2, kMerged = 3 };

struct ModelPayloadHeader {
  ModelPayloadKind kind = ModelPayloadKind::kFull;
  uint32_t from_version = 0;  // version the client must hold (0 for kFull)
  uint32_t to_version = 0;    // version the client holds after applying
  uint32_t dim = 0;      // the model's dimension after applying
  uint32_t pieces = 0;
  // Some piece is a shape change: `dim` is then the dimension after the last
  // one, and a full model's first piece is its shape (two pieces).
  bool shape_change = false;
  // A full model's last piece is a zero set (without a step) applied after it.
  bool zeros = false;
};

inline constexpr uint32_t kMaxChainPieces = 4096;

// Frames `pieces` (each a codec payload, a zero set or a shape change) into
// one model payload; header.shape_change and header.zeros are set from the pieces.
std::vector<uint8_t> EncodeModelPayload(const ModelPayloadHeader& header,
                                        std::span<const std::span<const uint8_t>> pieces);

// Validates the framing and returns the header and views of the pieces (into
// `bytes`). expected_dim is checked against the header's dim unless the
// payload carries a shape change (ApplyModelPayload checks those piece by piece).
Result<ModelPayloadHeader> ParseModelPayload(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                             std::vector<std::span<const uint8_t>>* pieces);

// Applies a payload to a client's copy. `held_version` is what the client
// holds (0 = nothing). On success `model` holds version to_version; on error
// `model` is unchanged and the error names what was wrong.
Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim);
// The same, for a client whose model may be pruned: expected_dim is the
// dimension the client holds (or, holding nothing, expects when no shape
// change comes). On success *new_sizes (if non-null) holds the prunable sizes (PrunableSizes)
// of the last shape change applied, or is left empty when none came.
Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim,
                                   std::vector<uint32_t>* new_sizes);
// The client's model, as a payload's shape changes must find it: each names
// the architecture it prunes (a Cnn's geometry, or an MLP) and the sizes it
// starts from, and a parameter count alone cannot tell a 28x28 CNN from a
// 29x30 one, or a logistic regression from an MLP of as many parameters.
// The broadcast steps a chain or merged payload carries, in order, as
// decoded (a zero set's step without its zeros, as DecodeBroadcastStep):
// what a client keeps for secure.derive_guide. InvalidArgument for a full
// model or a payload with a shape change (a history does not survive one),
// or any error of its pieces' decoders. `guide`: the round's support guide a
// merged piece of format version 3 is coded against (DecodeMergedSteps).
// `supports`: the client's supports for a piece of format version 4
// (privacy::StepSupportsFromHistory on its kept steps); null: none, and a
// version-4 piece is refused naming it.
Result<std::vector<SparseUpdate>> ChainPayloadSteps(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide = {},
                                                    const StepSupportFn* supports = nullptr);
// A merged piece's steps, any format version: DecodeMergedSteps (with `guide`
// for version 3), or DecodeMergedStepsV4 with `supports` for version 4.
Result<std::vector<SparseUpdate>> DecodeMergedPiece(std::span<const uint8_t> piece, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide,
                                                    const StepSupportFn* supports);

struct HeldModelShape {
  std::vector<uint32_t> unpruned;  // PrunableSizes of the unpruned model: what a full model's shape prunes
  std::vector<uint32_t> sizes;     // PrunableSizes of the model held now: what a chain's first shape change prunes
  std::optional<CnnGeometry> cnn;  // set: the model is a Cnn of this geometry
};

// The same, also carrying `follower` (non-null: a vector in the held model's
// layout, such as a client's error-feedback residual) through every shape
// change the payload applies. A full model with a shape maps a follower of its
// unpruned dimension through it and zeroes one of any other dimension than the
// new one. On error `follower` is unchanged too. With `held` (non-null), a
// shape change of another architecture or CNN geometry than held->cnn, or from
// other sizes than the model's at that point (a full model's: held->unpruned;
// a chain's first: held->sizes, each later one: the previous one's new sizes),
// is refused (InvalidArgument naming both) before anything changes.
// `guide`: the round's support guide (the secure pipeline's, as the task
// carries it, coordinates ascending), which a merged piece of format version
// 3 is coded against (refused when it was coded against another).
Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim,
                                   std::vector<uint32_t>* new_sizes, std::vector<float>* follower,
                                   const HeldModelShape* held = nullptr, std::span<const uint32_t> guide = {},
                                   const StepSupportFn* supports = nullptr);

}  // namespace frugal
