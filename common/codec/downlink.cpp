#include "frugal/codec/downlink.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

#include "byte_io.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"
#include "frugal/core/random.h"

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

}  // namespace frugal
