#include "frugal/codec/frame.h"

#include <zlib.h>

#include <cstring>
#include <string>

#include "byte_io.h"

namespace frugal {
namespace {

constexpr size_t kCrcOffset = 20;

uint32_t FrameCrc(std::span<const uint8_t> header_bytes, std::span<const uint8_t> body) {
  uLong crc = crc32_z(0L, header_bytes.data(), kCrcOffset);
  crc = crc32_z(crc, body.data(), body.size());
  return static_cast<uint32_t>(crc);
}

}  // namespace

std::string_view CodecName(CodecId codec) {
  switch (codec) {
    case CodecId::kUplinkSparse: return "uplink-sparse";
    case CodecId::kUplinkDense: return "uplink-dense";
    case CodecId::kDownlinkQuantized: return "downlink-quantized";
    case CodecId::kDownlinkFp32: return "downlink-fp32";
    case CodecId::kZeroSet: return "zero-set";
    case CodecId::kDownlinkMergedSteps: return "downlink-merged-steps";
  }
  return "unknown";
}

uint8_t LatestFrameVersion(CodecId codec) {
  if (codec == CodecId::kUplinkSparse) return kUplinkSparseVersion;
  if (codec == CodecId::kDownlinkMergedSteps) return kMergedStepsVersion;
  return kFrameVersion;
}

Status AppendFrame(const FrameHeader& header, std::span<const uint8_t> body, std::vector<uint8_t>* out) {
  if (body.size() > kMaxBodyBytes) {
    return ResourceExhaustedError("codec body of " + std::to_string(body.size()) + " bytes exceeds the limit of " +
                                  std::to_string(kMaxBodyBytes));
  }
  const size_t start = out->size();
  out->resize(start + kFrameHeaderSize);
  uint8_t* h = out->data() + start;
  PutU32(h, kFrameMagic);
  h[4] = static_cast<uint8_t>(header.codec);
  h[5] = header.version;
  PutU16(h + 6, header.flags);
  PutU32(h + 8, header.dim);
  PutU32(h + 12, header.count);
  PutU32(h + 16, static_cast<uint32_t>(body.size()));
  PutU32(h + kCrcOffset, FrameCrc({h, kFrameHeaderSize}, body));
  out->insert(out->end(), body.begin(), body.end());
  return OkStatus();
}

Result<ParsedFrame> ParseFrame(std::span<const uint8_t> payload) {
  if (payload.size() < kFrameHeaderSize) {
    return DataLossError("truncated payload: " + std::to_string(payload.size()) + " bytes, a header needs " +
                         std::to_string(kFrameHeaderSize));
  }
  const uint8_t* h = payload.data();
  if (GetU32(h) != kFrameMagic) return InvalidArgumentError("bad magic: not a Frugal codec payload");
  ParsedFrame f;
  f.header.codec = static_cast<CodecId>(h[4]);
  f.header.version = h[5];
  const uint8_t latest = LatestFrameVersion(f.header.codec);
  if (f.header.version < 1 || f.header.version > latest) {
    return InvalidArgumentError("unsupported codec version " + std::to_string(f.header.version) + " of " +
                                std::string(CodecName(f.header.codec)) + " (this build reads 1 to " +
                                std::to_string(latest) + ")");
  }
  f.header.flags = GetU16(h + 6);
  f.header.dim = GetU32(h + 8);
  f.header.count = GetU32(h + 12);
  f.header.body_len = GetU32(h + 16);
  const uint64_t present = payload.size() - kFrameHeaderSize;
  if (f.header.body_len > kMaxBodyBytes) {
    return ResourceExhaustedError("declared body length " + std::to_string(f.header.body_len) +
                                  " exceeds the limit of " + std::to_string(kMaxBodyBytes));
  }
  if (f.header.body_len > present) {
    return DataLossError("truncated payload: header declares " + std::to_string(f.header.body_len) +
                         " body bytes, " + std::to_string(present) + " present");
  }
  if (f.header.body_len < present) {
    return InvalidArgumentError("trailing bytes: header declares " + std::to_string(f.header.body_len) +
                                " body bytes, " + std::to_string(present) + " present");
  }
  f.body = payload.subspan(kFrameHeaderSize, f.header.body_len);
  const uint32_t stored = GetU32(h + kCrcOffset);
  const uint32_t actual = FrameCrc(payload.first(kFrameHeaderSize), f.body);
  if (stored != actual) return DataLossError("checksum mismatch: payload is corrupt");
  if (f.header.dim > kMaxCodecDim) {
    return ResourceExhaustedError("declared dimension " + std::to_string(f.header.dim) + " exceeds the limit of " +
                                  std::to_string(kMaxCodecDim));
  }
  return f;
}

Status SealFrame(std::span<uint8_t> payload) {
  if (payload.size() < kFrameHeaderSize) return DataLossError("payload shorter than a frame header");
  const uint64_t body = payload.size() - kFrameHeaderSize;
  if (body > kMaxBodyBytes) return ResourceExhaustedError("payload body exceeds the limit");
  PutU32(payload.data() + 16, static_cast<uint32_t>(body));
  PutU32(payload.data() + kCrcOffset, FrameCrc(payload.first(kFrameHeaderSize), payload.subspan(kFrameHeaderSize)));
  return OkStatus();
}

}  // namespace frugal
