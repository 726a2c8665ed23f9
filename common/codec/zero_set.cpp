#include "frugal/codec/zero_set.h"

#include <string>

#include "byte_io.h"
#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"

namespace frugal {
namespace {

// Body: Rice parameter byte (bit 7: adaptive section), step length (u32), the
// step's bytes, the zeros' index section. The frame's count is the zeros'.
constexpr uint8_t kAdaptiveFlag = 0x80;
constexpr uint8_t kRiceMask = 0x1f;
constexpr size_t kBodyFixedBytes = 1 + 4;

}  // namespace

Result<std::vector<uint8_t>> EncodeZeroSet(std::span<const uint8_t> step, std::span<const uint32_t> zeros,
                                           uint32_t dim) {
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("zero set: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  if (Status st = CheckSortedIndices(zeros, dim); !st.ok()) return st.error().WithContext("zero set");
  IndexSection section;
  if (!zeros.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(section, EncodeIndexSection(zeros, dim));
  }
  std::vector<uint8_t> body(kBodyFixedBytes + step.size() + section.bytes.size());
  body[0] = static_cast<uint8_t>(section.rice_parameter | (section.adaptive ? kAdaptiveFlag : 0));
  PutU32(body.data() + 1, static_cast<uint32_t>(step.size()));
  if (!step.empty()) std::memcpy(body.data() + kBodyFixedBytes, step.data(), step.size());
  if (!section.bytes.empty()) {
    std::memcpy(body.data() + kBodyFixedBytes + step.size(), section.bytes.data(), section.bytes.size());
  }
  FrameHeader h;
  h.codec = CodecId::kZeroSet;
  h.dim = dim;
  h.count = static_cast<uint32_t>(zeros.size());
  std::vector<uint8_t> out;
  FRUGAL_RETURN_IF_ERROR(AppendFrame(h, body, &out));
  return out;
}

bool IsZeroSet(std::span<const uint8_t> bytes) {
  return bytes.size() >= kFrameHeaderSize && GetU32(bytes.data()) == kFrameMagic &&
         bytes[4] == static_cast<uint8_t>(CodecId::kZeroSet);
}

Result<ZeroSetPiece> DecodeZeroSet(std::span<const uint8_t> bytes, uint32_t expected_dim) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(bytes));
  if (f.header.codec != CodecId::kZeroSet) {
    return InvalidArgumentError("zero set: the payload is " + std::string(CodecName(f.header.codec)));
  }
  if (f.header.flags != 0) return InvalidArgumentError("zero set: unknown flags " + std::to_string(f.header.flags));
  if (f.header.dim != expected_dim) {
    return InvalidArgumentError("zero set: dimension " + std::to_string(f.header.dim) + ", the model has " +
                                std::to_string(expected_dim));
  }
  if (f.header.count > f.header.dim) {
    return InvalidArgumentError("zero set: " + std::to_string(f.header.count) + " zeros in dimension " +
                                std::to_string(f.header.dim));
  }
  const std::span<const uint8_t> body = f.body;
  if (body.size() < kBodyFixedBytes) {
    return DataLossError("zero set: body of " + std::to_string(body.size()) + " bytes, needs at least " +
                         std::to_string(kBodyFixedBytes));
  }
  const uint8_t rice = body[0];
  if ((rice & ~(kAdaptiveFlag | kRiceMask)) != 0 || (rice & kRiceMask) > kMaxRiceParameter) {
    return InvalidArgumentError("zero set: bad Rice parameter byte " + std::to_string(rice));
  }
  const uint32_t step_len = GetU32(body.data() + 1);
  if (step_len > body.size() - kBodyFixedBytes) {
    return DataLossError("zero set: step of " + std::to_string(step_len) + " bytes, only " +
                         std::to_string(body.size() - kBodyFixedBytes) + " remain");
  }
  ZeroSetPiece out;
  if (step_len > 0) {
    auto step = DecodeUplink(body.subspan(kBodyFixedBytes, step_len), expected_dim);
    if (!step.ok()) return step.error().WithContext("zero set's step");
    out.has_step = true;
    out.step = std::move(*step);
  }
  const std::span<const uint8_t> index = body.subspan(kBodyFixedBytes + step_len);
  if (f.header.count == 0) {
    if (!index.empty() || rice != 0) return InvalidArgumentError("zero set: no zeros, but an index section");
    return out;
  }
  auto zeros = DecodeIndexSection(index, f.header.count, expected_dim, rice & kRiceMask, (rice & kAdaptiveFlag) != 0);
  if (!zeros.ok()) return zeros.error().WithContext("zero set's indices");
  out.zeros = std::move(*zeros);
  return out;
}

Result<SparseUpdate> DecodeBroadcastStep(std::span<const uint8_t> bytes, uint32_t expected_dim,
                                         std::vector<uint32_t>* zeros) {
  if (zeros != nullptr) zeros->clear();
  if (!IsZeroSet(bytes)) return DecodeUplink(bytes, expected_dim);
  FRUGAL_ASSIGN_OR_RETURN(ZeroSetPiece piece, DecodeZeroSet(bytes, expected_dim));
  if (zeros != nullptr) *zeros = std::move(piece.zeros);
  if (!piece.has_step) piece.step.dim = expected_dim;
  return std::move(piece.step);
}

void ApplyZeroSetPiece(const ZeroSetPiece& piece, std::span<float> model) {
  for (size_t j = 0; j < piece.step.indices.size(); ++j) model[piece.step.indices[j]] += piece.step.values[j];
  for (uint32_t z : piece.zeros) model[z] = 0.0f;
}

}  // namespace frugal
