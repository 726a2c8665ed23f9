#include "frugal/codec/downlink.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "byte_io.h"
#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/varint.h"
#include "frugal/core/random.h"
#include "range_coder.h"

// This file is compiled with -ffp-contract=off (see CMakeLists.txt): the reconstruction
// o + q * s must round identically in the encoder and in every client's decoder.

namespace frugal {
namespace {

constexpr uint16_t kFlagDelta = 1;
constexpr uint16_t kFlagStochastic = 2;
constexpr size_t kFixedBytes = 10;  // bits, param format, block size, base CRC
constexpr uint32_t kMaxBlockSize = 65536;
constexpr uint8_t kParamsFp16 = 0;
constexpr uint8_t kParamsFp32 = 1;
// Above this magnitude a block's offset and scale no longer fit fp16 comfortably.
constexpr float kFp16ParamLimit = 32768.0f;

bool IsFinite(float v) { return (std::bit_cast<uint32_t>(v) & 0x7f800000u) != 0x7f800000u; }

uint32_t FloatsCrc(std::span<const float> v) {
  if constexpr (std::endian::native == std::endian::little) {
    return static_cast<uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(v.data()), v.size() * sizeof(float)));
  } else {
    uLong crc = 0;
    for (float x : v) {
      uint8_t b[4];
      PutF32(b, x);
      crc = crc32_z(crc, b, 4);
    }
    return static_cast<uint32_t>(crc);
  }
}

Status CheckFinite(std::span<const float> v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!IsFinite(v[i])) {
      return InvalidArgumentError(std::string(what) + " value at index " + std::to_string(i) + " is " +
                                  (std::isnan(v[i]) ? "NaN" : "Inf"));
    }
  }
  return OkStatus();
}

uint64_t CodeBytes(uint64_t dim, int bits) { return (dim * static_cast<uint64_t>(bits) + 7) / 8; }

inline uint32_t CodeAt(const uint8_t* codes, uint64_t i, int bits) {
  const uint64_t bit = i * static_cast<uint64_t>(bits);
  return (codes[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1);
}

// The single reconstruction routine both sides run: out[i] = [base[i] +] (o + q * s).
void Dequantize(const uint8_t* codes, int bits, uint32_t dim, uint32_t block_size, std::span<const float> offsets,
                std::span<const float> scales, std::span<const float> base, float* out) {
  for (uint32_t start = 0, blk = 0; start < dim; start += block_size, ++blk) {
    const uint32_t end = std::min<uint64_t>(uint64_t{start} + block_size, dim);
    const float o = offsets[blk];
    const float s = scales[blk];
    if (base.empty()) {
      for (uint32_t i = start; i < end; ++i) out[i] = o + static_cast<float>(CodeAt(codes, i, bits)) * s;
    } else {
      for (uint32_t i = start; i < end; ++i) {
        const float delta = o + static_cast<float>(CodeAt(codes, i, bits)) * s;
        out[i] = base[i] + delta;
      }
    }
  }
}

Status CheckConfig(size_t d, const DownlinkConfig& cfg) {
  if (d == 0) return InvalidArgumentError("empty model (dimension 0)");
  if (d > kMaxCodecDim) {
    return ResourceExhaustedError("dimension " + std::to_string(d) + " exceeds the limit of " +
                                  std::to_string(kMaxCodecDim));
  }
  if (cfg.bits != 0 && cfg.bits != 2 && cfg.bits != 4 && cfg.bits != 8) {
    return InvalidArgumentError("unsupported bit width " + std::to_string(cfg.bits) + " (use 8, 4, 2 or 0 for fp32)");
  }
  if (cfg.block_size == 0 || cfg.block_size > kMaxBlockSize) {
    return InvalidArgumentError("block size " + std::to_string(cfg.block_size) + " outside [1, " +
                                std::to_string(kMaxBlockSize) + "]");
  }
  return OkStatus();
}

struct BlockParams {
  float offset;
  float scale;
  uint16_t offset_half = 0;
  uint16_t scale_half = 0;
};

// Offset rounded down and scale rounded up so that [o, o + L*s] covers [mn, mx].
BlockParams ChooseParams(float mn, float mx, int levels, bool fp16) {
  BlockParams p{};
  const float l = static_cast<float>(levels);
  if (fp16) {
    p.offset_half = FloatToHalfDown(mn);
    p.offset = HalfToFloat(p.offset_half);
    p.scale_half = FloatToHalfUp((mx - p.offset) / l);
    p.scale = HalfToFloat(p.scale_half);
    for (int i = 0; i < 4 && p.offset + l * p.scale < mx; ++i) {
      p.scale_half = static_cast<uint16_t>(p.scale_half + 1);
      p.scale = HalfToFloat(p.scale_half);
    }
  } else {
    p.offset = mn;
    p.scale = (mx - mn) / l;
    for (int i = 0; i < 4 && p.offset + l * p.scale < mx; ++i) p.scale = std::nextafter(p.scale, INFINITY);
  }
  return p;
}

struct Header {
  int bits = 0;
  uint8_t param_format = 0;
  uint32_t block_size = 0;
  uint32_t base_crc = 0;
  uint32_t nblocks = 0;
  bool delta = false;
};

Result<Header> ParseQuantizedFixed(const ParsedFrame& f) {
  const FrameHeader& h = f.header;
  if (h.flags & ~(kFlagDelta | kFlagStochastic)) {
    return InvalidArgumentError("unknown flags " + std::to_string(h.flags) + " on a downlink payload");
  }
  if (f.body.size() < kFixedBytes) {
    return DataLossError("truncated downlink body: " + std::to_string(f.body.size()) + " bytes, fixed fields need " +
                         std::to_string(kFixedBytes));
  }
  Header q;
  q.bits = f.body[0];
  q.param_format = f.body[1];
  q.block_size = GetU32(f.body.data() + 2);
  q.base_crc = GetU32(f.body.data() + 6);
  q.delta = (h.flags & kFlagDelta) != 0;
  if (q.bits != 2 && q.bits != 4 && q.bits != 8) {
    return InvalidArgumentError("unsupported bit width " + std::to_string(q.bits));
  }
  if (q.param_format != kParamsFp16 && q.param_format != kParamsFp32) {
    return InvalidArgumentError("unknown block parameter format " + std::to_string(q.param_format));
  }
  if (q.block_size == 0 || q.block_size > kMaxBlockSize) {
    return InvalidArgumentError("block size " + std::to_string(q.block_size) + " outside [1, " +
                                std::to_string(kMaxBlockSize) + "]");
  }
  const uint64_t nblocks = (uint64_t{h.dim} + q.block_size - 1) / q.block_size;
  if (h.count != nblocks) {
    return InvalidArgumentError("block count " + std::to_string(h.count) + " does not match dimension " +
                                std::to_string(h.dim) + " in blocks of " + std::to_string(q.block_size) + " (" +
                                std::to_string(nblocks) + ")");
  }
  q.nblocks = static_cast<uint32_t>(nblocks);
  const uint64_t param_bytes = nblocks * (q.param_format == kParamsFp16 ? 4 : 8);
  const uint64_t expected = kFixedBytes + param_bytes + CodeBytes(h.dim, q.bits);
  if (f.body.size() != expected) {
    return DataLossError("downlink body has " + std::to_string(f.body.size()) + " bytes, " + std::to_string(h.dim) +
                         " values at " + std::to_string(q.bits) + " bits need " + std::to_string(expected));
  }
  if (!q.delta && q.base_crc != 0) return InvalidArgumentError("base checksum set on a full-model payload");
  return q;
}

Status CheckFp32Layout(const ParsedFrame& f) {
  const FrameHeader& h = f.header;
  if (h.flags != 0) return InvalidArgumentError("unknown flags " + std::to_string(h.flags) + " on an fp32 downlink payload");
  if (h.count != h.dim) {
    return InvalidArgumentError("fp32 downlink count " + std::to_string(h.count) + " differs from dimension " +
                                std::to_string(h.dim));
  }
  if (f.body.size() != 4ull * h.dim) {
    return DataLossError("fp32 downlink body has " + std::to_string(f.body.size()) + " bytes, dimension " +
                         std::to_string(h.dim) + " needs " + std::to_string(4ull * h.dim));
  }
  return OkStatus();
}

Result<ParsedFrame> ParseDownlinkFrame(std::span<const uint8_t> payload, uint32_t expected_dim) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(payload));
  if (f.header.codec != CodecId::kDownlinkQuantized && f.header.codec != CodecId::kDownlinkFp32) {
    return InvalidArgumentError("codec id " + std::to_string(static_cast<int>(f.header.codec)) + " (" +
                                std::string(CodecName(f.header.codec)) + ") is not a downlink codec");
  }
  if (f.header.dim != expected_dim) {
    return InvalidArgumentError("dimension mismatch: payload declares " + std::to_string(f.header.dim) +
                                ", expected " + std::to_string(expected_dim));
  }
  if (f.header.dim == 0) return InvalidArgumentError("payload declares dimension 0");
  return f;
}

}  // namespace

Result<DownlinkEncoded> EncodeDownlink(std::span<const float> target, std::span<const float> base,
                                       const DownlinkConfig& cfg) {
  const size_t d = target.size();
  FRUGAL_RETURN_IF_ERROR(CheckConfig(d, cfg));
  if (!base.empty() && base.size() != d) {
    return InvalidArgumentError("base has " + std::to_string(base.size()) + " values, target has " +
                                std::to_string(d));
  }
  FRUGAL_RETURN_IF_ERROR(CheckFinite(target, "target"));
  DownlinkEncoded enc;
  FrameHeader header;
  header.dim = static_cast<uint32_t>(d);
  if (cfg.bits == 0) {  // lossless: always the full model, a float delta would not round-trip
    header.codec = CodecId::kDownlinkFp32;
    header.count = static_cast<uint32_t>(d);
    std::vector<uint8_t> body(4 * d);
    PutF32Array(body.data(), target.data(), d);
    FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &enc.bytes));
    enc.reconstruction.assign(target.begin(), target.end());
    return enc;
  }
  const bool delta = !base.empty();
  std::vector<float> x(target.begin(), target.end());
  if (delta) {
    FRUGAL_RETURN_IF_ERROR(CheckFinite(base, "base"));
    for (size_t i = 0; i < d; ++i) x[i] -= base[i];
    FRUGAL_RETURN_IF_ERROR(CheckFinite(x, "delta (target - base)"));
  }
  const int bits = cfg.bits;
  const int levels = (1 << bits) - 1;
  const uint32_t bs = cfg.block_size;
  const uint32_t nblocks = static_cast<uint32_t>((d + bs - 1) / bs);
  float max_abs = 0.0f;
  for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
  const bool fp16 = max_abs <= kFp16ParamLimit;
  const size_t param_bytes = static_cast<size_t>(nblocks) * (fp16 ? 4 : 8);

  std::vector<uint8_t> body(kFixedBytes + param_bytes + CodeBytes(d, bits), 0);
  body[0] = static_cast<uint8_t>(bits);
  body[1] = fp16 ? kParamsFp16 : kParamsFp32;
  PutU32(body.data() + 2, bs);
  PutU32(body.data() + 6, delta ? FloatsCrc(base) : 0);
  uint8_t* params = body.data() + kFixedBytes;
  uint8_t* codes = params + param_bytes;

  std::vector<float> offsets(nblocks), scales(nblocks);
  Rng rng(cfg.seed);
  for (uint32_t blk = 0; blk < nblocks; ++blk) {
    const size_t start = static_cast<size_t>(blk) * bs;
    const size_t end = std::min(start + bs, d);
    float mn = x[start], mx = x[start];
    for (size_t i = start + 1; i < end; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
    }
    if (!IsFinite(mx - mn)) {
      return InvalidArgumentError("block " + std::to_string(blk) + " spans too wide a range to quantize");
    }
    const BlockParams p = ChooseParams(mn, mx, levels, fp16);
    offsets[blk] = p.offset;
    scales[blk] = p.scale;
    if (fp16) {
      PutU16(params + 4 * blk, p.offset_half);
      PutU16(params + 4 * blk + 2, p.scale_half);
    } else {
      PutF32(params + 8 * blk, p.offset);
      PutF32(params + 8 * blk + 4, p.scale);
    }
    const float fl = static_cast<float>(levels);
    for (size_t i = start; i < end; ++i) {
      float t = p.scale > 0.0f ? (x[i] - p.offset) / p.scale : 0.0f;
      t = cfg.stochastic ? std::floor(t + rng.UniformFloat()) : std::floor(t + 0.5f);
      const uint32_t q = static_cast<uint32_t>(std::clamp(t, 0.0f, fl));
      const uint64_t bit = static_cast<uint64_t>(i) * bits;
      codes[bit >> 3] |= static_cast<uint8_t>(q << (bit & 7));
    }
  }
  header.codec = CodecId::kDownlinkQuantized;
  header.count = nblocks;
  header.flags = static_cast<uint16_t>((delta ? kFlagDelta : 0) | (cfg.stochastic ? kFlagStochastic : 0));
  FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &enc.bytes));
  enc.reconstruction.resize(d);
  Dequantize(codes, bits, static_cast<uint32_t>(d), bs, offsets, scales, base, enc.reconstruction.data());
  if (delta) FRUGAL_RETURN_IF_ERROR(CheckFinite(enc.reconstruction, "reconstruction"));
  return enc;
}

Result<std::vector<float>> DecodeDownlink(std::span<const uint8_t> payload, std::span<const float> base,
                                          uint32_t expected_dim) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseDownlinkFrame(payload, expected_dim));
  const uint32_t d = f.header.dim;
  if (f.header.codec == CodecId::kDownlinkFp32) {
    FRUGAL_RETURN_IF_ERROR(CheckFp32Layout(f));
    std::vector<float> out(d);
    GetF32Array(f.body.data(), out.data(), d);
    FRUGAL_RETURN_IF_ERROR(CheckFinite(out, "model"));
    return out;
  }
  FRUGAL_ASSIGN_OR_RETURN(Header q, ParseQuantizedFixed(f));
  if (q.delta) {
    if (base.size() != d) {
      return FailedPreconditionError("payload is a delta against a " + std::to_string(d) + "-value base, caller holds " +
                                     std::to_string(base.size()) + " values");
    }
    if (FloatsCrc(base) != q.base_crc) {
      return FailedPreconditionError("base checksum mismatch: the delta was made against a different model version");
    }
  }
  const int levels = (1 << q.bits) - 1;
  const uint8_t* params = f.body.data() + kFixedBytes;
  std::vector<float> offsets(q.nblocks), scales(q.nblocks);
  for (uint32_t blk = 0; blk < q.nblocks; ++blk) {
    float o, s;
    if (q.param_format == kParamsFp16) {
      const uint16_t oh = GetU16(params + 4 * blk), sh = GetU16(params + 4 * blk + 2);
      if (!HalfIsFinite(oh) || !HalfIsFinite(sh)) {
        return InvalidArgumentError("block " + std::to_string(blk) + ": offset or scale is NaN/Inf");
      }
      o = HalfToFloat(oh);
      s = HalfToFloat(sh);
    } else {
      o = GetF32(params + 8 * blk);
      s = GetF32(params + 8 * blk + 4);
    }
    if (!IsFinite(o) || !IsFinite(s) || !IsFinite(o + static_cast<float>(levels) * s)) {
      return InvalidArgumentError("block " + std::to_string(blk) + ": offset or scale is NaN/Inf or overflows");
    }
    if (s < 0.0f) return InvalidArgumentError("block " + std::to_string(blk) + ": negative scale");
    offsets[blk] = o;
    scales[blk] = s;
  }
  const uint8_t* codes = params + static_cast<size_t>(q.nblocks) * (q.param_format == kParamsFp16 ? 4 : 8);
  const uint64_t used_bits = uint64_t{d} * static_cast<uint64_t>(q.bits);
  if ((used_bits & 7) != 0 && (codes[used_bits >> 3] >> (used_bits & 7)) != 0) {
    return InvalidArgumentError("non-zero padding bits after the last code");
  }
  std::vector<float> out(d);
  Dequantize(codes, q.bits, d, q.block_size, offsets, scales, q.delta ? base : std::span<const float>(), out.data());
  if (q.delta) FRUGAL_RETURN_IF_ERROR(CheckFinite(out, "reconstruction"));
  return out;
}

Result<DownlinkInfo> InspectDownlink(std::span<const uint8_t> payload, uint32_t expected_dim) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseDownlinkFrame(payload, expected_dim));
  DownlinkInfo info;
  info.dim = f.header.dim;
  if (f.header.codec == CodecId::kDownlinkFp32) {
    FRUGAL_RETURN_IF_ERROR(CheckFp32Layout(f));
    return info;
  }
  FRUGAL_ASSIGN_OR_RETURN(Header q, ParseQuantizedFixed(f));
  info.bits = q.bits;
  info.delta = q.delta;
  info.fp32_params = q.param_format == kParamsFp32;
  info.block_size = q.block_size;
  return info;
}

// ---- Merged steps -----------------------------------------------------------

namespace {

using range_coding::Prob;
using range_coding::RangeDecoder;
using range_coding::RangeEncoder;

// Body, versions 1 and 2: u32 union size U, u8 index parameter (Rice b in bits
// 0-4, bit 7 set when the section is adaptive Rice), u32 index section length,
// the index section; per step a level table (version 1: u8 count and that many
// f32 levels, ascending in TotalOrderKey; version 2 also u8 0 then f32 m for the
// pair -m, +m); then the range-coded symbols to the end of the body. Version 3
// splits the union by the round's guide G (given to both sides): u32 U, u32
// CRC32 of G, u32 U_in (coordinates in G), then two index sections (parameter,
// length, section), the first over G's ranks (a coordinate as its position in
// G), the second over the ranks in the complement; level tables as version 2,
// and symbols whose contexts also say whether the coordinate is in G. The
// frame's count is the steps.
constexpr size_t kMergedFixedBytes = 9;
constexpr size_t kMergedFixedBytesV3 = 22;
constexpr uint8_t kAdaptiveFlag = 0x80;
// Decisions a decoder may be asked for (union size x steps), so a small payload
// cannot declare unbounded work, and the entries it decodes (8 bytes each) stay
// under 128 MiB. The encoder refuses more, and the engine then sends the chain:
// with U <= 0.5% x dim x T that takes chains of over 129 steps of the 2NN.
constexpr uint64_t kMaxMergedCells = uint64_t{1} << 24;

// A strict total order on floats (-0 before +0), so a level table has one order.
uint32_t TotalOrderKey(float v) {
  const uint32_t b = std::bit_cast<uint32_t>(v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Adaptive contexts of the symbol section. The last index of each is whether
// the coordinate is in the guide (version 3; always 0 before it, so versions 1
// and 2 code exactly as they did).
struct MergeModel {
  // "Coordinate present in this step", by how often it was present in the
  // earlier steps (0, 1, 2, 3 or more) and whether in the step just before.
  std::array<std::array<std::array<Prob, 2>, 2>, 4> presence;
  // A two-level step's level (for ternary steps: the sign), by the level of the
  // coordinate's last two-level step: none, low, high.
  std::array<std::array<Prob, 2>, 3> level2;
};

// Per coordinate of the union, walking the steps in order.
struct CoordState {
  uint32_t occ = 0;
  int prev = 0;
  int last_level = 0;  // 0: none yet, 1: low, 2: high (two-level steps)
  int in_guide = 0;
};

// Version 2's level table entry for a pair -m, +m (m > 0): the byte 0, then m.
bool SymmetricPair(const std::vector<float>& l) {
  return l.size() == 2 && l[1] > 0.0f && std::bit_cast<uint32_t>(l[0]) == (std::bit_cast<uint32_t>(l[1]) | 0x80000000u);
}

int LevelBits(uint32_t levels) { return levels <= 2 ? 0 : std::bit_width(levels - 1); }

Status CheckStepsShape(size_t steps, uint32_t dim) {
  if (steps == 0) return InvalidArgumentError("merged steps: no steps");
  if (steps > kMaxMergedSteps) {
    return InvalidArgumentError("merged steps: " + std::to_string(steps) + " steps exceed the limit of " +
                                std::to_string(kMaxMergedSteps));
  }
  if (dim == 0) return InvalidArgumentError("merged steps: dimension 0");
  if (dim > kMaxCodecDim) {
    return ResourceExhaustedError("merged steps: dimension " + std::to_string(dim) + " exceeds the limit of " +
                                  std::to_string(kMaxCodecDim));
  }
  return OkStatus();
}

Status CheckGuide(std::span<const uint32_t> guide, uint32_t dim) {
  for (size_t j = 0; j < guide.size(); ++j) {
    if (guide[j] >= dim || (j > 0 && guide[j] <= guide[j - 1])) {
      return InvalidArgumentError("merged steps: the guide is not strictly ascending inside dimension " +
                                  std::to_string(dim) + " (at entry " + std::to_string(j) + ")");
    }
  }
  return OkStatus();
}

uint32_t GuideCrc(std::span<const uint32_t> guide) {
  uLong crc = crc32_z(0L, nullptr, 0);
  for (uint32_t g : guide) {
    uint8_t b[4];
    PutU32(b, g);
    crc = crc32_z(crc, b, 4);
  }
  return static_cast<uint32_t>(crc);
}

// One index section with its parameter byte and u32 length; none (0, 0) for no indices.
Status AppendIndexSection(std::span<const uint32_t> sorted, uint32_t dim, std::vector<uint8_t>* body) {
  IndexSection index;
  if (!sorted.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(index, EncodeIndexSection(sorted, dim));
  }
  body->push_back(static_cast<uint8_t>(index.rice_parameter | (index.adaptive ? kAdaptiveFlag : 0)));
  const size_t at = body->size();
  body->resize(at + 4);
  PutU32(body->data() + at, static_cast<uint32_t>(index.bytes.size()));
  body->insert(body->end(), index.bytes.begin(), index.bytes.end());
  return OkStatus();
}

// Reads what AppendIndexSection writes for `count` indices below `dim`, from body[*pos].
Result<std::vector<uint32_t>> ReadIndexSection(std::span<const uint8_t> body, size_t* pos, uint32_t count,
                                               uint32_t dim, const char* which) {
  const std::string where = std::string("merged steps' ") + which + " index section";
  if (body.size() - *pos < 5) return DataLossError(where + ": cut off");
  const int b = body[*pos] & ~kAdaptiveFlag;
  const bool adaptive = (body[*pos] & kAdaptiveFlag) != 0;
  const uint32_t len = GetU32(body.data() + *pos + 1);
  *pos += 5;
  if (len > body.size() - *pos) {
    return DataLossError(where + " declares " + std::to_string(len) + " bytes, only " +
                         std::to_string(body.size() - *pos) + " remain");
  }
  const std::span<const uint8_t> section = body.subspan(*pos, len);
  *pos += len;
  if (count == 0) {
    if (len != 0 || body[*pos - len - 5] != 0) return InvalidArgumentError(where + ": no indices, yet a section");
    return std::vector<uint32_t>{};
  }
  if (count > dim) {
    return InvalidArgumentError(where + ": " + std::to_string(count) + " indices among " + std::to_string(dim));
  }
  auto indices = DecodeIndexSection(section, count, dim, b, adaptive);
  if (!indices.ok()) return indices.error().WithContext(where);
  return indices;
}

// Per step: its distinct values (ascending in TotalOrderKey) and each entry's level index.
Status LevelTables(std::span<const SparseUpdate> steps, uint32_t dim, std::vector<std::vector<float>>* levels,
                   std::vector<std::vector<uint8_t>>* codes) {
  levels->assign(steps.size(), {});
  codes->assign(steps.size(), {});
  for (size_t t = 0; t < steps.size(); ++t) {
    const SparseUpdate& u = steps[t];
    const std::string where = "merged steps: step " + std::to_string(t);
    if (u.dim != dim) {
      return InvalidArgumentError(where + " has dimension " + std::to_string(u.dim) + ", expected " +
                                  std::to_string(dim));
    }
    if (u.indices.empty()) return InvalidArgumentError(where + " is empty");
    if (u.values.size() != u.indices.size()) {
      return InvalidArgumentError(where + " has " + std::to_string(u.values.size()) + " values for " +
                                  std::to_string(u.indices.size()) + " indices");
    }
    if (Status st = CheckSortedIndices(u.indices, dim); !st.ok()) return st.error().WithContext(where);
    std::vector<uint32_t> keys;
    keys.reserve(u.values.size());
    for (float v : u.values) {
      if (!IsFinite(v)) return InvalidArgumentError(where + " has a non-finite value");
      keys.push_back(TotalOrderKey(v));
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    if (keys.size() > kMaxMergedLevels) {
      return InvalidArgumentError(where + " has " + std::to_string(keys.size()) +
                                  " distinct values, more than the " + std::to_string(kMaxMergedLevels) +
                                  " a merged payload codes");
    }
    for (uint32_t k : keys) {
      const uint32_t b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
      (*levels)[t].push_back(std::bit_cast<float>(b));
    }
    (*codes)[t].reserve(u.values.size());
    for (float v : u.values) {
      (*codes)[t].push_back(
          static_cast<uint8_t>(std::lower_bound(keys.begin(), keys.end(), TotalOrderKey(v)) - keys.begin()));
    }
  }
  return OkStatus();
}

// Every step's level table: version 1 writes a u8 count and the f32 levels;
// from version 2 on a pair -m, +m is the byte 0 and then m alone.
void AppendLevelTables(std::span<const std::vector<float>> levels, uint8_t version, std::vector<uint8_t>* body) {
  for (const std::vector<float>& l : levels) {
    if (version >= 2 && SymmetricPair(l)) {
      body->push_back(0);
      const size_t at = body->size();
      body->resize(at + 4);
      PutF32Array(body->data() + at, &l[1], 1);
      continue;
    }
    body->push_back(static_cast<uint8_t>(l.size()));
    const size_t at = body->size();
    body->resize(at + 4 * l.size());
    PutF32Array(body->data() + at, l.data(), l.size());
  }
}

// Reads what AppendLevelTables writes for `count` steps, from body[*pos]:
// levels finite and strictly ascending, a pair's magnitude finite and positive.
Result<std::vector<std::vector<float>>> ReadLevelTables(std::span<const uint8_t> body, size_t* pos, uint32_t count,
                                                         uint8_t version) {
  std::vector<std::vector<float>> levels(count);
  for (uint32_t t = 0; t < count; ++t) {
    const std::string where = "merged steps: step " + std::to_string(t);
    if (*pos >= body.size()) return DataLossError(where + ": level table cut off");
    const uint32_t declared = body[(*pos)++];
    if (declared == 0 && version < 2) return InvalidArgumentError(where + " declares no values");
    // Version 2 on: a count of 0 is the pair -m, +m sent as m alone.
    const uint32_t stored = declared == 0 ? 1 : declared;
    if (uint64_t{stored} * 4 > body.size() - *pos) return DataLossError(where + ": level table cut off");
    levels[t].resize(stored);
    GetF32Array(body.data() + *pos, levels[t].data(), stored);
    *pos += 4ull * stored;
    if (declared == 0) {
      const float mag = levels[t][0];
      if (!(IsFinite(mag) && mag > 0.0f)) {
        return InvalidArgumentError(where + ": the magnitude of its -m, +m pair is not finite and positive");
      }
      levels[t] = {-mag, mag};
    }
    for (uint32_t j = 0; j < levels[t].size(); ++j) {
      if (!IsFinite(levels[t][j])) return InvalidArgumentError(where + ": level " + std::to_string(j) + " is NaN/Inf");
      if (j > 0 && TotalOrderKey(levels[t][j - 1]) >= TotalOrderKey(levels[t][j])) {
        return InvalidArgumentError(where + ": levels not strictly ascending at " + std::to_string(j));
      }
    }
  }
  return levels;
}

}  // namespace

Result<std::vector<uint8_t>> EncodeMergedSteps(std::span<const SparseUpdate> steps, uint32_t dim, uint8_t version,
                                               std::span<const uint32_t> guide) {
  if (version < 1 || version > 3) {
    return InvalidArgumentError("merged steps: no format version " + std::to_string(version) +
                                " (1 to 3 here; version 4 is EncodeMergedStepsV4)");
  }
  FRUGAL_RETURN_IF_ERROR(CheckStepsShape(steps.size(), dim));
  const bool split = version >= 3;
  if (split) FRUGAL_RETURN_IF_ERROR(CheckGuide(guide, dim));
  const size_t t_count = steps.size();
  std::vector<std::vector<float>> levels;
  std::vector<std::vector<uint8_t>> codes;  // level index of each entry
  FRUGAL_RETURN_IF_ERROR(LevelTables(steps, dim, &levels, &codes));
  // The union of the supports, ascending.
  std::vector<uint32_t> all;
  for (const SparseUpdate& u : steps) all.insert(all.end(), u.indices.begin(), u.indices.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  if (uint64_t{all.size()} * t_count > kMaxMergedCells) {
    return ResourceExhaustedError("merged steps: " + std::to_string(all.size()) + " coordinates x " +
                                  std::to_string(t_count) + " steps exceed the limit of " +
                                  std::to_string(kMaxMergedCells) + " decisions");
  }
  std::vector<uint8_t> body;
  std::vector<uint8_t> in_guide(all.size(), 0);
  if (split) {
    // The union as ranks in G and ranks in its complement.
    std::vector<uint32_t> in_ranks, out_ranks;
    size_t g = 0;
    for (size_t u = 0; u < all.size(); ++u) {
      while (g < guide.size() && guide[g] < all[u]) ++g;
      if (g < guide.size() && guide[g] == all[u]) {
        in_guide[u] = 1;
        in_ranks.push_back(static_cast<uint32_t>(g));
      } else {
        out_ranks.push_back(all[u] - static_cast<uint32_t>(g));
      }
    }
    body.resize(12);
    PutU32(body.data(), static_cast<uint32_t>(all.size()));
    PutU32(body.data() + 4, GuideCrc(guide));
    PutU32(body.data() + 8, static_cast<uint32_t>(in_ranks.size()));
    FRUGAL_RETURN_IF_ERROR(AppendIndexSection(in_ranks, static_cast<uint32_t>(guide.size()), &body));
    FRUGAL_RETURN_IF_ERROR(AppendIndexSection(out_ranks, dim - static_cast<uint32_t>(guide.size()), &body));
  } else {
    FRUGAL_ASSIGN_OR_RETURN(IndexSection index, EncodeIndexSection(all, dim));
    body.resize(kMergedFixedBytes + index.bytes.size());
    PutU32(body.data(), static_cast<uint32_t>(all.size()));
    body[4] = static_cast<uint8_t>(index.rice_parameter | (index.adaptive ? kAdaptiveFlag : 0));
    PutU32(body.data() + 5, static_cast<uint32_t>(index.bytes.size()));
    std::copy(index.bytes.begin(), index.bytes.end(), body.begin() + kMergedFixedBytes);
  }
  AppendLevelTables(levels, version, &body);
  RangeEncoder rc(&body);
  MergeModel m;
  std::vector<size_t> cursor(t_count, 0);
  for (size_t u = 0; u < all.size(); ++u) {
    const uint32_t idx = all[u];
    CoordState c;
    c.in_guide = in_guide[u];
    for (size_t t = 0; t < t_count; ++t) {
      const std::vector<uint32_t>& ind = steps[t].indices;
      const bool present = cursor[t] < ind.size() && ind[cursor[t]] == idx;
      // A coordinate of the union is in some step: absent from all before the last, it is in the last.
      if (!(c.occ == 0 && t + 1 == t_count)) {
        rc.Bit(m.presence[std::min<uint32_t>(c.occ, 3)][c.prev][c.in_guide], present);
      }
      c.prev = present;
      if (!present) continue;
      const uint32_t level = codes[t][cursor[t]++];
      const uint32_t nlev = static_cast<uint32_t>(levels[t].size());
      if (nlev == 2) {
        rc.Bit(m.level2[c.last_level][c.in_guide], static_cast<int>(level));
        c.last_level = 1 + static_cast<int>(level);
      } else if (nlev > 2) {
        rc.Direct(level, LevelBits(nlev));
        c.last_level = 0;
      }
      ++c.occ;
    }
  }
  rc.Finish();
  FrameHeader header;
  header.codec = CodecId::kDownlinkMergedSteps;
  header.version = version;
  header.dim = dim;
  header.count = static_cast<uint32_t>(t_count);
  std::vector<uint8_t> out;
  FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &out));
  return out;
}

Result<std::vector<SparseUpdate>> DecodeMergedSteps(std::span<const uint8_t> payload, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(payload));
  const FrameHeader& h = f.header;
  if (h.codec != CodecId::kDownlinkMergedSteps) {
    return InvalidArgumentError("codec id " + std::to_string(static_cast<int>(h.codec)) + " (" +
                                std::string(CodecName(h.codec)) + ") is not a merged-steps payload");
  }
  if (h.dim != expected_dim) {
    return InvalidArgumentError("merged steps: dimension mismatch: payload declares " + std::to_string(h.dim) +
                                ", expected " + std::to_string(expected_dim));
  }
  if (h.flags != 0) return InvalidArgumentError("merged steps: unknown flags " + std::to_string(h.flags));
  FRUGAL_RETURN_IF_ERROR(CheckStepsShape(h.count, h.dim));
  if (h.version >= 4) {
    return InvalidArgumentError("merged steps: version " + std::to_string(h.version) +
                                " is coded given each round's support; it needs the client's kept steps "
                                "(DecodeMergedStepsV4)");
  }
  const bool split = h.version >= 3;
  if (split) FRUGAL_RETURN_IF_ERROR(CheckGuide(guide, h.dim));
  const std::span<const uint8_t> body = f.body;
  const size_t fixed = split ? kMergedFixedBytesV3 : kMergedFixedBytes;
  if (body.size() < fixed) {
    return DataLossError("merged steps: body of " + std::to_string(body.size()) + " bytes, fixed fields need " +
                         std::to_string(fixed));
  }
  const uint32_t u_count = GetU32(body.data());
  if (u_count == 0 || u_count > h.dim) {
    return InvalidArgumentError("merged steps: union of " + std::to_string(u_count) + " coordinates for dimension " +
                                std::to_string(h.dim));
  }
  if (uint64_t{u_count} * h.count > kMaxMergedCells) {
    return ResourceExhaustedError("merged steps: " + std::to_string(u_count) + " coordinates x " +
                                  std::to_string(h.count) + " steps exceed the limit of " +
                                  std::to_string(kMaxMergedCells) + " decisions");
  }
  std::vector<uint32_t> all;
  std::vector<uint8_t> in_guide;
  size_t pos = 0;
  if (split) {
    if (GetU32(body.data() + 4) != GuideCrc(guide)) {
      return InvalidArgumentError("merged steps: coded against another guide than the client's (guide checksum "
                                  "mismatch)");
    }
    const uint32_t in_count = GetU32(body.data() + 8);
    if (in_count > u_count) {
      return InvalidArgumentError("merged steps: " + std::to_string(in_count) + " of a union of " +
                                  std::to_string(u_count) + " in the guide");
    }
    pos = 12;
    const auto g_size = static_cast<uint32_t>(guide.size());
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> in_ranks, ReadIndexSection(body, &pos, in_count, g_size, "in-guide"));
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> out_ranks,
                            ReadIndexSection(body, &pos, u_count - in_count, h.dim - g_size, "off-guide"));
    // Back to coordinates, then merged in ascending order.
    std::vector<uint32_t> outside;
    outside.reserve(out_ranks.size());
    size_t g = 0;
    for (uint32_t r : out_ranks) {
      while (g < guide.size() && guide[g] <= r + g) ++g;
      outside.push_back(r + static_cast<uint32_t>(g));
    }
    all.reserve(u_count);
    in_guide.reserve(u_count);
    size_t i = 0, o = 0;
    while (i < in_ranks.size() || o < outside.size()) {
      if (o == outside.size() || (i < in_ranks.size() && guide[in_ranks[i]] < outside[o])) {
        all.push_back(guide[in_ranks[i++]]);
        in_guide.push_back(1);
      } else {
        all.push_back(outside[o++]);
        in_guide.push_back(0);
      }
    }
  } else {
    const int b = body[4] & ~kAdaptiveFlag;
    const bool adaptive = (body[4] & kAdaptiveFlag) != 0;
    const uint32_t index_len = GetU32(body.data() + 5);
    if (index_len > body.size() - kMergedFixedBytes) {
      return DataLossError("merged steps: index section declares " + std::to_string(index_len) + " bytes, only " +
                           std::to_string(body.size() - kMergedFixedBytes) + " remain");
    }
    auto union_or = DecodeIndexSection(body.subspan(kMergedFixedBytes, index_len), u_count, h.dim, b, adaptive);
    if (!union_or.ok()) return union_or.error().WithContext("merged steps' index section");
    all = std::move(*union_or);
    in_guide.assign(all.size(), 0);
    pos = kMergedFixedBytes + index_len;
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<std::vector<float>> levels, ReadLevelTables(body, &pos, h.count, h.version));
  RangeDecoder rc(body.subspan(pos));
  MergeModel m;
  std::vector<SparseUpdate> steps(h.count);
  for (SparseUpdate& s : steps) s.dim = h.dim;
  std::vector<std::vector<uint8_t>> used(h.count);
  for (uint32_t t = 0; t < h.count; ++t) used[t].assign(levels[t].size(), 0);
  for (size_t u = 0; u < all.size(); ++u) {
    const uint32_t idx = all[u];
    CoordState c;
    c.in_guide = in_guide[u];
    for (uint32_t t = 0; t < h.count; ++t) {
      int present = 1;
      if (!(c.occ == 0 && t + 1 == h.count)) {
        present = rc.Bit(m.presence[std::min<uint32_t>(c.occ, 3)][c.prev][c.in_guide]);
      }
      c.prev = present;
      if (!present) continue;
      const uint32_t nlev = static_cast<uint32_t>(levels[t].size());
      uint32_t level = 0;
      if (nlev == 2) {
        level = static_cast<uint32_t>(rc.Bit(m.level2[c.last_level][c.in_guide]));
        c.last_level = 1 + static_cast<int>(level);
      } else if (nlev > 2) {
        level = static_cast<uint32_t>(rc.Direct(LevelBits(nlev)));
        if (level >= nlev) {
          return InvalidArgumentError("merged steps: coordinate " + std::to_string(idx) + " in step " +
                                      std::to_string(t) + " has level " + std::to_string(level) + " of " +
                                      std::to_string(nlev));
        }
        c.last_level = 0;
      }
      steps[t].indices.push_back(idx);
      steps[t].values.push_back(levels[t][level]);
      used[t][level] = 1;
      ++c.occ;
    }
  }
  if (!rc.consistent()) return DataLossError("merged steps: symbol section is corrupt (code outside its range)");
  for (uint32_t t = 0; t < h.count; ++t) {
    if (steps[t].indices.empty()) return InvalidArgumentError("merged steps: step " + std::to_string(t) + " is empty");
    for (size_t j = 0; j < used[t].size(); ++j) {
      if (!used[t][j]) {
        return InvalidArgumentError("merged steps: step " + std::to_string(t) + "'s level " + std::to_string(j) +
                                    " is never used");
      }
    }
  }
  // Canonical input only: the bytes must be exactly what the encoder writes for these steps.
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> again, EncodeMergedSteps(steps, h.dim, h.version, guide));
  if (!std::equal(again.begin(), again.end(), payload.begin(), payload.end())) {
    return InvalidArgumentError("merged steps: payload of " + std::to_string(payload.size()) +
                                " bytes is not the encoding of the steps it decodes to (" +
                                std::to_string(again.size()) + " bytes)");
  }
  return steps;
}

namespace {

// Version 4's symbol contexts: presence of a support coordinate by how often it
// was present in the piece's earlier steps (0, 1, 2+), whether in the step just
// before, and whether it is in the guided half; a two-level step's level by the
// coordinate's last two-level level (none, low, high) and the guided half.
struct MergeModelV4 {
  std::array<std::array<std::array<Prob, 2>, 2>, 3> presence;
  std::array<std::array<Prob, 2>, 3> level2;
};

// A number as its bit width (6 bits) and the bits below its top one.
void PutGamma(RangeEncoder& rc, uint32_t v) {
  const int w = std::bit_width(v);
  rc.Direct(static_cast<uint64_t>(w), 6);
  if (w > 1) rc.Direct(v & ((uint32_t{1} << (w - 1)) - 1), w - 1);
}

Result<uint32_t> GetGamma(RangeDecoder& rc, const char* what) {
  const auto w = static_cast<int>(rc.Direct(6));
  if (w == 0) return uint32_t{0};
  if (w > 32) return InvalidArgumentError(std::string("merged steps v4: ") + what + " of bit width " + std::to_string(w));
  const uint64_t low = w > 1 ? rc.Direct(w - 1) : 0;
  return static_cast<uint32_t>((uint64_t{1} << (w - 1)) | low);
}

// A round's support as flags per position: 1 rand-k half, 2 guided half; checked.
Status CheckStepSupport(const StepSupport& s, uint32_t dim, uint32_t round, std::vector<uint8_t>* in_guide) {
  const std::string where = "merged steps v4: round " + std::to_string(round) + "'s support";
  if (s.support.empty()) return InvalidArgumentError(where + " is empty");
  for (size_t j = 0; j < s.support.size(); ++j) {
    if (s.support[j] >= dim || (j > 0 && s.support[j] <= s.support[j - 1])) {
      return InvalidArgumentError(where + " is not strictly ascending inside dimension " + std::to_string(dim));
    }
  }
  in_guide->assign(s.support.size(), 0);
  size_t k = 0;
  for (size_t j = 0; j < s.guide.size(); ++j) {
    if (j > 0 && s.guide[j] <= s.guide[j - 1]) return InvalidArgumentError(where + ": its guide is not ascending");
    while (k < s.support.size() && s.support[k] < s.guide[j]) ++k;
    if (k == s.support.size() || s.support[k] != s.guide[j]) {
      return InvalidArgumentError(where + ": guide coordinate " + std::to_string(s.guide[j]) + " is not in it");
    }
    (*in_guide)[k] = 1;
  }
  return OkStatus();
}

// Per-coordinate state across the piece's steps (dense: the decoder's work is
// bounded by the supports, its memory by the dimension).
struct CoordTrackV4 {
  explicit CoordTrackV4(uint32_t dim) : occ(dim, 0), last_step(dim, 0), last_level(dim, 0) {}
  std::vector<uint8_t> occ;         // 0, 1, 2+ earlier steps present
  std::vector<uint32_t> last_step;  // 1 + the last step present in, 0: none
  std::vector<uint8_t> last_level;  // 0 none, 1 low, 2 high (two-level steps)
};

// The version-4 body for steps whose supports are known.
Result<std::vector<uint8_t>> EncodeV4(std::span<const SparseUpdate> steps, std::span<const uint32_t> rounds,
                                      uint32_t dim, std::span<const StepSupport> supports,
                                      std::span<const std::vector<uint8_t>> in_guide) {
  std::vector<std::vector<float>> levels;
  std::vector<std::vector<uint8_t>> codes;
  FRUGAL_RETURN_IF_ERROR(LevelTables(steps, dim, &levels, &codes));
  std::vector<uint8_t> body;
  for (size_t t = 0; t < rounds.size(); ++t) PutVarint(body, t == 0 ? rounds[0] : rounds[t] - rounds[t - 1] - 1);
  AppendLevelTables(levels, 4, &body);
  RangeEncoder rc(&body);
  MergeModelV4 m;
  CoordTrackV4 c(dim);
  for (size_t t = 0; t < steps.size(); ++t) {
    const std::vector<uint32_t>& ind = steps[t].indices;
    const std::vector<uint32_t>& sup = supports[t].support;
    // Off the support: its count and positions (gaps), then presence on the support.
    std::vector<uint32_t> off;
    {
      size_t k = 0;
      for (uint32_t i : ind) {
        while (k < sup.size() && sup[k] < i) ++k;
        if (k == sup.size() || sup[k] != i) off.push_back(i);
      }
    }
    PutGamma(rc, static_cast<uint32_t>(off.size()));
    int64_t prev = -1;
    for (uint32_t i : off) {
      PutGamma(rc, static_cast<uint32_t>(i - prev - 1));
      prev = i;
    }
    std::vector<uint8_t> guided_entry(ind.size(), 0);
    size_t e = 0;
    for (size_t k = 0; k < sup.size(); ++k) {
      const uint32_t i = sup[k];
      while (e < ind.size() && ind[e] < i) ++e;
      const bool present = e < ind.size() && ind[e] == i;
      rc.Bit(m.presence[std::min<uint8_t>(c.occ[i], 2)][c.last_step[i] == t && t > 0][in_guide[t][k]], present);
      if (present) guided_entry[e] = in_guide[t][k];
    }
    const uint32_t nlev = static_cast<uint32_t>(levels[t].size());
    for (size_t j = 0; j < ind.size(); ++j) {
      const uint32_t i = ind[j];
      const uint32_t level = codes[t][j];
      if (nlev == 2) {
        rc.Bit(m.level2[c.last_level[i]][guided_entry[j]], static_cast<int>(level));
        c.last_level[i] = static_cast<uint8_t>(1 + level);
      } else if (nlev > 2) {
        rc.Direct(level, LevelBits(nlev));
        c.last_level[i] = 0;
      }
      c.occ[i] = static_cast<uint8_t>(std::min(c.occ[i] + 1, 2));
      c.last_step[i] = static_cast<uint32_t>(t + 1);
    }
  }
  rc.Finish();
  FrameHeader header;
  header.codec = CodecId::kDownlinkMergedSteps;
  header.version = 4;
  header.dim = dim;
  header.count = static_cast<uint32_t>(steps.size());
  std::vector<uint8_t> out;
  FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &out));
  return out;
}

Status AddCells(uint64_t* cells, uint64_t n) {
  *cells += n;
  if (*cells > kMaxMergedCells) {
    return ResourceExhaustedError("merged steps v4: the supports' decisions exceed the limit of " +
                                  std::to_string(kMaxMergedCells));
  }
  return OkStatus();
}

}  // namespace

Result<std::vector<uint8_t>> EncodeMergedStepsV4(std::span<const SparseUpdate> steps, std::span<const uint32_t> rounds,
                                                 uint32_t dim, const StepSupportFn& supports) {
  FRUGAL_RETURN_IF_ERROR(CheckStepsShape(steps.size(), dim));
  if (rounds.size() != steps.size()) {
    return InvalidArgumentError("merged steps v4: " + std::to_string(rounds.size()) + " rounds for " +
                                std::to_string(steps.size()) + " steps");
  }
  for (size_t t = 0; t < rounds.size(); ++t) {
    if (rounds[t] == 0 || (t > 0 && rounds[t] <= rounds[t - 1])) {
      return InvalidArgumentError("merged steps v4: rounds not strictly ascending from 1 (at step " +
                                  std::to_string(t) + ")");
    }
  }
  std::vector<StepSupport> sup(steps.size());
  std::vector<std::vector<uint8_t>> in_guide(steps.size());
  uint64_t cells = 0;
  for (size_t t = 0; t < steps.size(); ++t) {
    FRUGAL_ASSIGN_OR_RETURN(sup[t], supports(rounds[t], steps.first(t)));
    FRUGAL_RETURN_IF_ERROR(CheckStepSupport(sup[t], dim, rounds[t], &in_guide[t]));
    FRUGAL_RETURN_IF_ERROR(AddCells(&cells, sup[t].support.size() + steps[t].indices.size()));
  }
  return EncodeV4(steps, rounds, dim, sup, in_guide);
}

Result<uint8_t> MergedStepsVersion(std::span<const uint8_t> payload) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(payload));
  if (f.header.codec != CodecId::kDownlinkMergedSteps) {
    return InvalidArgumentError("codec id " + std::to_string(static_cast<int>(f.header.codec)) + " (" +
                                std::string(CodecName(f.header.codec)) + ") is not a merged-steps payload");
  }
  return f.header.version;
}

Result<MergedStepsV4> DecodeMergedStepsV4(std::span<const uint8_t> payload, uint32_t expected_dim,
                                          const StepSupportFn& supports) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(payload));
  const FrameHeader& h = f.header;
  if (h.codec != CodecId::kDownlinkMergedSteps) {
    return InvalidArgumentError("codec id " + std::to_string(static_cast<int>(h.codec)) + " (" +
                                std::string(CodecName(h.codec)) + ") is not a merged-steps payload");
  }
  if (h.version != 4) {
    return InvalidArgumentError("merged steps: version " + std::to_string(h.version) + " is not version 4");
  }
  if (h.dim != expected_dim) {
    return InvalidArgumentError("merged steps: dimension mismatch: payload declares " + std::to_string(h.dim) +
                                ", expected " + std::to_string(expected_dim));
  }
  if (h.flags != 0) return InvalidArgumentError("merged steps: unknown flags " + std::to_string(h.flags));
  FRUGAL_RETURN_IF_ERROR(CheckStepsShape(h.count, h.dim));
  const std::span<const uint8_t> body = f.body;
  // A step costs at least a varint and a 5-byte level table: no support is built for a declared count the body cannot hold.
  if (uint64_t{h.count} * 6 > body.size()) {
    return DataLossError("merged steps v4: body of " + std::to_string(body.size()) + " bytes for " +
                         std::to_string(h.count) + " steps");
  }
  MergedStepsV4 out;
  size_t pos = 0;
  uint64_t round = 0;
  for (uint32_t t = 0; t < h.count; ++t) {
    uint64_t v = 0;
    if (VarintError e = GetVarint(body, &pos, std::numeric_limits<uint32_t>::max(), &v); e != VarintError::kOk) {
      return InvalidArgumentError(std::string("merged steps v4: step ") + std::to_string(t) + "'s round: " +
                                  VarintErrorText(e));
    }
    round = t == 0 ? v : round + v + 1;
    if (round == 0 || round > std::numeric_limits<uint32_t>::max()) {
      return InvalidArgumentError("merged steps v4: step " + std::to_string(t) + "'s round is outside 1..2^32-1");
    }
    out.rounds.push_back(static_cast<uint32_t>(round));
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<std::vector<float>> levels, ReadLevelTables(body, &pos, h.count, h.version));
  RangeDecoder rc(body.subspan(pos));
  MergeModelV4 m;
  CoordTrackV4 c(h.dim);
  out.steps.resize(h.count);
  std::vector<StepSupport> sup(h.count);
  std::vector<std::vector<uint8_t>> in_guide(h.count);
  uint64_t cells = 0;
  for (uint32_t t = 0; t < h.count; ++t) {
    const std::string where = "merged steps v4: step " + std::to_string(t);
    auto s = supports(out.rounds[t], std::span<const SparseUpdate>(out.steps).first(t));
    if (!s.ok()) return s.error().WithContext(where + " (round " + std::to_string(out.rounds[t]) + ")");
    sup[t] = std::move(*s);
    FRUGAL_RETURN_IF_ERROR(CheckStepSupport(sup[t], h.dim, out.rounds[t], &in_guide[t]));
    const std::vector<uint32_t>& support = sup[t].support;
    FRUGAL_ASSIGN_OR_RETURN(const uint32_t n_off, GetGamma(rc, "off-support count"));
    if (n_off > h.dim - support.size()) {
      return InvalidArgumentError(where + ": " + std::to_string(n_off) + " entries off a support of " +
                                  std::to_string(support.size()) + " in dimension " + std::to_string(h.dim));
    }
    FRUGAL_RETURN_IF_ERROR(AddCells(&cells, uint64_t{support.size()} + n_off));
    std::vector<uint32_t> off;
    off.reserve(n_off);
    int64_t prev = -1;
    for (uint32_t j = 0; j < n_off; ++j) {
      FRUGAL_ASSIGN_OR_RETURN(const uint32_t gap, GetGamma(rc, "off-support gap"));
      const int64_t i = prev + 1 + gap;
      if (i >= h.dim) return InvalidArgumentError(where + ": off-support entry " + std::to_string(i) + " outside the dimension");
      if (std::binary_search(support.begin(), support.end(), static_cast<uint32_t>(i))) {
        return InvalidArgumentError(where + ": off-support entry " + std::to_string(i) + " lies on the support");
      }
      off.push_back(static_cast<uint32_t>(i));
      prev = i;
    }
    // Presence on the support, merged with the off-support entries in ascending order.
    SparseUpdate& step = out.steps[t];
    step.dim = h.dim;
    std::vector<uint8_t> guided_entry;
    size_t o = 0;
    for (size_t k = 0; k < support.size(); ++k) {
      const uint32_t i = support[k];
      const int present = rc.Bit(m.presence[std::min<uint8_t>(c.occ[i], 2)][c.last_step[i] == t && t > 0][in_guide[t][k]]);
      if (!present) continue;
      while (o < off.size() && off[o] < i) {
        step.indices.push_back(off[o++]);
        guided_entry.push_back(0);
      }
      step.indices.push_back(i);
      guided_entry.push_back(in_guide[t][k]);
    }
    while (o < off.size()) {
      step.indices.push_back(off[o++]);
      guided_entry.push_back(0);
    }
    if (step.indices.empty()) return InvalidArgumentError(where + " is empty");
    const uint32_t nlev = static_cast<uint32_t>(levels[t].size());
    std::vector<uint8_t> used(nlev, 0);
    step.values.reserve(step.indices.size());
    for (size_t j = 0; j < step.indices.size(); ++j) {
      const uint32_t i = step.indices[j];
      uint32_t level = 0;
      if (nlev == 2) {
        level = static_cast<uint32_t>(rc.Bit(m.level2[c.last_level[i]][guided_entry[j]]));
        c.last_level[i] = static_cast<uint8_t>(1 + level);
      } else if (nlev > 2) {
        level = static_cast<uint32_t>(rc.Direct(LevelBits(nlev)));
        if (level >= nlev) {
          return InvalidArgumentError(where + ": coordinate " + std::to_string(i) + " has level " +
                                      std::to_string(level) + " of " + std::to_string(nlev));
        }
        c.last_level[i] = 0;
      }
      used[level] = 1;
      step.values.push_back(levels[t][level]);
      c.occ[i] = static_cast<uint8_t>(std::min(c.occ[i] + 1, 2));
      c.last_step[i] = t + 1;
    }
    for (uint32_t j = 0; j < nlev; ++j) {
      if (!used[j]) return InvalidArgumentError(where + "'s level " + std::to_string(j) + " is never used");
    }
  }
  if (!rc.consistent()) return DataLossError("merged steps v4: symbol section is corrupt (code outside its range)");
  // Canonical input only; a client whose supports differ from the encoder's lands here too.
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> again, EncodeV4(out.steps, out.rounds, h.dim, sup, in_guide));
  if (!std::equal(again.begin(), again.end(), payload.begin(), payload.end())) {
    return InvalidArgumentError("merged steps v4: payload of " + std::to_string(payload.size()) +
                                " bytes is not the encoding of the steps it decodes to (" +
                                std::to_string(again.size()) + " bytes; a support rebuilt from other steps?)");
  }
  return out;
}

}  // namespace frugal
