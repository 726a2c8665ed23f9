#include "frugal/round/model_payload.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "frugal/codec/downlink.h"
#include "frugal/codec/uplink.h"
#include "frugal/codec/zero_set.h"
#include "frugal/model/prune.h"

namespace frugal {
namespace {

constexpr uint8_t kMagic[4] = {'F', 'R', 'M', 'P'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kHeaderBytes = 4 + 1 + 1 + 2 + 4 * 4;
// Header byte 6: bit 0, some piece is a shape change; bit 1, a full model's last piece is a zero set.
constexpr uint8_t kFlagShape = 1;
constexpr uint8_t kFlagZeros = 2;

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

std::string SizesText(std::span<const uint32_t> sizes) {
  std::string out;
  for (uint32_t v : sizes) {
    if (!out.empty()) out += '-';
    out += std::to_string(v);
  }
  return out;
}

std::string ArchitectureText(const std::optional<CnnGeometry>& cnn) {
  if (!cnn) return "an MLP";
  return "a CNN of " + std::to_string(cnn->height) + "x" + std::to_string(cnn->width) + " images with kernel " +
         std::to_string(cnn->kernel);
}

// Whether `change` prunes the client's model as it is at that point: `from`
// (its prunable sizes; `whose` names them in the error) of a Cnn of `cnn`, or an MLP.
Status CheckShapeFits(const MlpShapeChange& change, const std::vector<uint32_t>& from,
                      const std::optional<CnnGeometry>& cnn, const std::string& where, const std::string& whose) {
  if (from.empty()) {
    return InvalidArgumentError(where + " prunes " + ArchitectureText(change.cnn) + ", " + whose +
                                " has no hidden layers or channels to prune");
  }
  if (change.cnn != cnn) {
    return InvalidArgumentError(where + " is of " + ArchitectureText(change.cnn) + ", " + whose + " is " +
                                ArchitectureText(cnn));
  }
  if (change.old_sizes != from) {
    return InvalidArgumentError(where + " prunes layer sizes " + SizesText(change.old_sizes) + ", " + whose +
                                " has " + SizesText(from));
  }
  return OkStatus();
}

}  // namespace

std::vector<uint8_t> EncodeModelPayload(const ModelPayloadHeader& header,
                                        std::span<const std::span<const uint8_t>> pieces) {
  size_t total = kHeaderBytes;
  for (auto p : pieces) total += 4 + p.size();
  std::vector<uint8_t> out(total);
  uint8_t* w = out.data();
  std::memcpy(w, kMagic, 4);
  w[4] = kFormatVersion;
  w[5] = static_cast<uint8_t>(header.kind);
  const bool shape = std::ranges::any_of(pieces, [](std::span<const uint8_t> p) { return IsShapeChange(p); });
  const bool zeros = header.kind == ModelPayloadKind::kFull && !pieces.empty() && IsZeroSet(pieces.back());
  w[6] = static_cast<uint8_t>((shape ? kFlagShape : 0) | (zeros ? kFlagZeros : 0));
  w[7] = 0;
  PutU32(w + 8, header.from_version);
  PutU32(w + 12, header.to_version);
  PutU32(w + 16, header.dim);
  PutU32(w + 20, static_cast<uint32_t>(pieces.size()));
  w += kHeaderBytes;
  for (auto p : pieces) {
    PutU32(w, static_cast<uint32_t>(p.size()));
    if (!p.empty()) std::memcpy(w + 4, p.data(), p.size());
    w += 4 + p.size();
  }
  return out;
}

Result<ModelPayloadHeader> ParseModelPayload(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                             std::vector<std::span<const uint8_t>>* pieces) {
  if (bytes.size() < kHeaderBytes) {
    return DataLossError("model payload truncated: " + std::to_string(bytes.size()) +
                         " bytes, header needs " + std::to_string(kHeaderBytes));
  }
  if (std::memcmp(bytes.data(), kMagic, 4) != 0) return InvalidArgumentError("model payload: bad magic");
  if (bytes[4] != kFormatVersion) {
    return InvalidArgumentError("model payload: unsupported format version " + std::to_string(bytes[4]));
  }
  ModelPayloadHeader h;
  if (bytes[5] != static_cast<uint8_t>(ModelPayloadKind::kFull) &&
      bytes[5] != static_cast<uint8_t>(ModelPayloadKind::kChain) &&
      bytes[5] != static_cast<uint8_t>(ModelPayloadKind::kMerged)) {
    return InvalidArgumentError("model payload: unknown kind " + std::to_string(bytes[5]));
  }
  h.kind = static_cast<ModelPayloadKind>(bytes[5]);
  if ((bytes[6] & ~(kFlagShape | kFlagZeros)) != 0 || bytes[7] != 0) {
    return InvalidArgumentError("model payload: unknown flags " + std::to_string(bytes[6]) + ", " +
                                std::to_string(bytes[7]));
  }
  h.shape_change = (bytes[6] & kFlagShape) != 0;
  h.zeros = (bytes[6] & kFlagZeros) != 0;
  if (h.zeros && h.kind != ModelPayloadKind::kFull) {
    return InvalidArgumentError("model payload: a chain's zero sets are its pieces, not a trailing one");
  }
  h.from_version = GetU32(&bytes[8]);
  h.to_version = GetU32(&bytes[12]);
  h.dim = GetU32(&bytes[16]);
  h.pieces = GetU32(&bytes[20]);
  if (h.dim != expected_dim && !h.shape_change) {
    return InvalidArgumentError("model payload dimension " + std::to_string(h.dim) +
                                " does not match the model's " + std::to_string(expected_dim));
  }
  const uint32_t full_pieces = 1u + (h.shape_change ? 1u : 0u) + (h.zeros ? 1u : 0u);
  if (h.kind == ModelPayloadKind::kFull && h.pieces != full_pieces) {
    return InvalidArgumentError("full model payload must hold exactly " + std::to_string(full_pieces) +
                                " pieces (" + (h.shape_change ? "shape, " : "") + "model" + (h.zeros ? ", zeros" : "") +
                                "), has " + std::to_string(h.pieces));
  }
  if (h.kind == ModelPayloadKind::kMerged &&
      (h.pieces != 1 || h.shape_change || h.to_version <= h.from_version || h.from_version == 0 ||
       h.to_version - h.from_version > kMaxMergedSteps)) {
    return InvalidArgumentError("merged model payload must hold 1 piece, no shape change, and go from a held version to a "
                                "later one (at most " + std::to_string(kMaxMergedSteps) + " steps); it has " +
                                std::to_string(h.pieces) + " pieces from version " + std::to_string(h.from_version) +
                                " to " + std::to_string(h.to_version));
  }
  if (h.pieces > kMaxChainPieces) {
    return ResourceExhaustedError("model payload declares " + std::to_string(h.pieces) +
                                  " pieces, limit " + std::to_string(kMaxChainPieces));
  }
  if (h.kind == ModelPayloadKind::kChain &&
      (h.to_version < h.from_version || h.to_version - h.from_version != h.pieces)) {
    return InvalidArgumentError("model payload chain from version " + std::to_string(h.from_version) +
                                " to " + std::to_string(h.to_version) + " with " +
                                std::to_string(h.pieces) + " pieces is inconsistent");
  }
  pieces->clear();
  size_t pos = kHeaderBytes;
  for (uint32_t i = 0; i < h.pieces; ++i) {
    if (bytes.size() - pos < 4) return DataLossError("model payload truncated in piece " + std::to_string(i));
    const uint32_t len = GetU32(&bytes[pos]);
    pos += 4;
    if (len > bytes.size() - pos) {
      return DataLossError("model payload piece " + std::to_string(i) + " declares " +
                           std::to_string(len) + " bytes, only " + std::to_string(bytes.size() - pos) + " remain");
    }
    pieces->push_back(bytes.subspan(pos, len));
    pos += len;
  }
  if (pos != bytes.size()) {
    return InvalidArgumentError("model payload has " + std::to_string(bytes.size() - pos) + " trailing bytes");
  }
  return h;
}

Result<std::vector<SparseUpdate>> DecodeMergedPiece(std::span<const uint8_t> piece, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide,
                                                    const StepSupportFn* supports) {
  FRUGAL_ASSIGN_OR_RETURN(uint8_t version, MergedStepsVersion(piece));
  if (version < 4) return DecodeMergedSteps(piece, expected_dim, guide);
  if (supports == nullptr) {
    return FailedPreconditionError("merged steps of format version 4 need the client's kept steps (a secure task "
                                   "deriving its guide), which this payload came without");
  }
  FRUGAL_ASSIGN_OR_RETURN(MergedStepsV4 v4, DecodeMergedStepsV4(piece, expected_dim, *supports));
  return std::move(v4.steps);
}

Result<std::vector<SparseUpdate>> ChainPayloadSteps(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide,
                                                    const StepSupportFn* supports) {
  std::vector<std::span<const uint8_t>> pieces;
  FRUGAL_ASSIGN_OR_RETURN(ModelPayloadHeader h, ParseModelPayload(bytes, expected_dim, &pieces));
  if (h.kind == ModelPayloadKind::kFull) return InvalidArgumentError("model payload is a full model, not steps");
  if (h.shape_change) return InvalidArgumentError("model payload carries a shape change");
  if (h.kind == ModelPayloadKind::kMerged) {
    auto merged = DecodeMergedPiece(pieces[0], expected_dim, guide, supports);
    if (!merged.ok()) return merged.error().WithContext("merged model payload");
    return merged;
  }
  std::vector<SparseUpdate> steps;
  steps.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    auto u = DecodeBroadcastStep(pieces[i], expected_dim);
    if (!u.ok()) return u.error().WithContext("model payload piece " + std::to_string(i));
    steps.push_back(std::move(*u));
  }
  return steps;
}

Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim) {
  return ApplyModelPayload(bytes, held_version, model, expected_dim, nullptr);
}

Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim,
                                   std::vector<uint32_t>* new_sizes) {
  return ApplyModelPayload(bytes, held_version, model, expected_dim, new_sizes, nullptr);
}

Result<uint32_t> ApplyModelPayload(std::span<const uint8_t> bytes, uint32_t held_version,
                                   std::vector<float>& model, uint32_t expected_dim,
                                   std::vector<uint32_t>* new_sizes, std::vector<float>* follower,
                                   const HeldModelShape* held, std::span<const uint32_t> guide,
                                   const StepSupportFn* supports) {
  std::vector<std::span<const uint8_t>> pieces;
  FRUGAL_ASSIGN_OR_RETURN(ModelPayloadHeader h, ParseModelPayload(bytes, expected_dim, &pieces));
  std::vector<uint32_t> sizes;  // the last shape change's layer sizes
  if (h.kind == ModelPayloadKind::kFull) {
    uint32_t dim = expected_dim;
    if (h.shape_change) {
      auto shape = DecodeShapeChange(pieces[0]);
      if (!shape.ok()) return shape.error().WithContext("full model payload's shape");
      if (Status st = CheckShapeChange(*shape); !st.ok()) return st.error().WithContext("full model payload's shape");
      if (held != nullptr) {
        FRUGAL_RETURN_IF_ERROR(
            CheckShapeFits(*shape, held->unpruned, held->cnn, "full model payload's shape", "the client's unpruned model"));
      }
      sizes = shape->NewSizes();
      if (shape->NewParamCount() != h.dim) {
        return InvalidArgumentError("full model payload's shape has " + std::to_string(shape->NewParamCount()) +
                                    " parameters, its header says " + std::to_string(h.dim));
      }
      dim = h.dim;
    }
    const std::span<const uint8_t> body = pieces[h.shape_change ? 1 : 0];
    FRUGAL_ASSIGN_OR_RETURN(std::vector<float> full, DecodeDownlink(body, {}, dim));
    if (h.zeros) {
      // The quantized model is near zero there; the zero set makes it exact.
      auto zeros = DecodeZeroSet(pieces.back(), dim);
      if (!zeros.ok()) return zeros.error().WithContext("full model payload's zeros");
      if (zeros->has_step) return InvalidArgumentError("full model payload's zeros carry a step");
      ApplyZeroSetPiece(*zeros, full);
    }
    model = std::move(full);
    if (follower != nullptr && h.shape_change && follower->size() != dim) {
      auto shape = DecodeShapeChange(pieces[0]);  // decoded and checked above
      if (follower->size() == shape->OldParamCount()) {
        *follower = ApplyParamMap(ShapeChangeParamMap(*shape), *follower);
      } else {
        follower->assign(dim, 0.0f);
      }
    }
    if (new_sizes != nullptr) *new_sizes = std::move(sizes);
    return h.to_version;
  }
  if (held_version != h.from_version || model.size() != expected_dim) {
    return FailedPreconditionError("model payload is a chain from version " + std::to_string(h.from_version) +
                                   " but the client holds version " + std::to_string(held_version));
  }
  if (h.kind == ModelPayloadKind::kMerged) {
    auto merged = DecodeMergedPiece(pieces[0], expected_dim, guide, supports);
    if (!merged.ok()) return merged.error().WithContext("merged model payload");
    if (merged->size() != h.to_version - h.from_version) {
      return InvalidArgumentError("merged model payload holds " + std::to_string(merged->size()) +
                                  " steps, its versions " + std::to_string(h.from_version) + " to " +
                                  std::to_string(h.to_version) + " say " +
                                  std::to_string(h.to_version - h.from_version));
    }
    // In step order, each coordinate's values added one at a time: the same float
    // additions as the chain's, so the same model bit for bit.
    for (const SparseUpdate& u : *merged) {
      for (size_t j = 0; j < u.indices.size(); ++j) model[u.indices[j]] += u.values[j];
    }
    if (new_sizes != nullptr) new_sizes->clear();
    return h.to_version;
  }
  // Decode every piece before touching the model so a bad piece leaves it intact.
  struct Step {
    SparseUpdate update;
    std::vector<uint32_t> zeros;  // set to zero after the update
    std::vector<uint32_t> map;  // a shape change: new index -> old index
    bool reshape = false;
  };
  std::vector<Step> steps;
  steps.reserve(pieces.size());
  uint32_t dim = expected_dim;
  std::vector<uint32_t> held_sizes = held != nullptr ? held->sizes : std::vector<uint32_t>{};
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string where = "model payload piece " + std::to_string(i);
    Step step;
    if (h.shape_change && IsShapeChange(pieces[i])) {
      auto shape = DecodeShapeChange(pieces[i]);
      if (!shape.ok()) return shape.error().WithContext(where);
      if (Status st = CheckShapeChange(*shape); !st.ok()) return st.error().WithContext(where);
      if (held != nullptr) {
        FRUGAL_RETURN_IF_ERROR(CheckShapeFits(*shape, held_sizes, held->cnn, where + "'s shape change",
                                              "the client's model at that point"));
        held_sizes = shape->NewSizes();
      }
      if (shape->OldParamCount() != dim) {
        return InvalidArgumentError(where + ": shape change is from a model of " +
                                    std::to_string(shape->OldParamCount()) + " parameters, the model has " +
                                    std::to_string(dim));
      }
      step.map = ShapeChangeParamMap(*shape);
      step.reshape = true;
      dim = static_cast<uint32_t>(step.map.size());
      sizes = shape->NewSizes();
    } else {
      auto u = DecodeBroadcastStep(pieces[i], dim, &step.zeros);
      if (!u.ok()) return u.error().WithContext(where);
      step.update = std::move(*u);
    }
    steps.push_back(std::move(step));
  }
  if (dim != h.dim) {
    return InvalidArgumentError("model payload ends at dimension " + std::to_string(dim) + ", its header says " +
                                std::to_string(h.dim));
  }
  for (const Step& s : steps) {
    if (s.reshape) {
      if (follower != nullptr && follower->size() == model.size()) *follower = ApplyParamMap(s.map, *follower);
      model = ApplyParamMap(s.map, model);
      continue;
    }
    for (size_t j = 0; j < s.update.indices.size(); ++j) model[s.update.indices[j]] += s.update.values[j];
    for (uint32_t z : s.zeros) model[z] = 0.0f;
  }
  if (new_sizes != nullptr) *new_sizes = std::move(sizes);
  return h.to_version;
}

}  // namespace frugal
