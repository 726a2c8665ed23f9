// Framing shared by every codec payload: a fixed 24-byte little-endian header
// (magic, codec id, version, flags, dimension, count, body length, CRC32) in
// front of a codec-specific body. Wire layout in docs/codecs.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// Payload kinds; the numbers are on the wire and never reused.
enum class CodecId : uint8_t {
  kUplinkSparse = 1,    // top-k indices (Rice) + quantized values
  kUplinkDense = 2,     // raw fp32 update
  kDownlinkQuantized = 3,  // block-quantized model or model delta
  kDownlinkFp32 = 4,    // lossless fp32 model
  kZeroSet = 5,         // coordinates set to exactly zero, after an optional step (zero_set.h)
  kDownlinkMergedSteps = 6,  // a chain of sparse steps coded as one (lossless)
};

inline constexpr uint32_t kFrameMagic = 0x47555246;  // bytes "FRUG"
inline constexpr uint8_t kFrameVersion = 1;
// Uplink-sparse bodies are at version 2 (the index section may be adaptive Rice,
// flagged in the Rice parameter byte); version 1 bodies (plain Rice) still decode.
inline constexpr uint8_t kUplinkSparseVersion = 2;
// Merged steps (codec 6): 2 sends a -m, +m level pair as m; 3 also codes the union
// given the round's support guide; 1 and 2 are still read and written.
inline constexpr uint8_t kMergedStepsVersion = 4;
inline constexpr size_t kFrameHeaderSize = 24;
// Hard limits every decoder enforces before allocating.
inline constexpr uint32_t kMaxCodecDim = 1u << 28;        // parameters in one vector
inline constexpr uint64_t kMaxBodyBytes = 1ull << 31;     // 2 GiB

// Header fields. The checksum is CRC32 (zlib) over header bytes [0, 20) and the body.
struct FrameHeader {
  CodecId codec = CodecId::kUplinkSparse;
  uint8_t version = kFrameVersion;
  uint16_t flags = 0;
  uint32_t dim = 0;
  uint32_t count = 0;
  uint32_t body_len = 0;
};

// Human-readable codec name ("uplink-sparse", ...); "unknown" for other values.
std::string_view CodecName(CodecId codec);

// Appends header + body to `out` (body_len is taken from body.size(); fails if over kMaxBodyBytes).
Status AppendFrame(const FrameHeader& header, std::span<const uint8_t> body, std::vector<uint8_t>* out);

// A parsed frame; `body` points into the caller's payload.
struct ParsedFrame {
  FrameHeader header;
  std::span<const uint8_t> body;
};

// The highest version of `codec` this build reads (kFrameVersion for unknown codecs).
uint8_t LatestFrameVersion(CodecId codec);

// Validates magic, version (1 to LatestFrameVersion(codec)), lengths (truncation and trailing bytes) and the checksum, in
// that order, then that dim <= kMaxCodecDim. Codec-specific fields are left to the caller.
Result<ParsedFrame> ParseFrame(std::span<const uint8_t> payload);

// Rewrites body_len and the checksum of a payload in place so it matches its bytes; for
// tests and fuzzers that edit a payload on purpose. Fails if shorter than a header.
Status SealFrame(std::span<uint8_t> payload);

}  // namespace frugal
