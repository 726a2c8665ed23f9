#include "frugal/codec/uplink.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

#include "byte_io.h"
#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/bit_io.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/topk.h"

namespace frugal {
namespace {

constexpr uint16_t kFlagZstd = 1;
constexpr int kZstdLevel = 3;
constexpr size_t kSparseFixedBytes = 2;  // value coding, Rice parameter
// Version 2: bit 7 of the Rice parameter byte marks an adaptive Rice index section;
// bits 5 and 6 are reserved (0). Version 1 knows only plain Rice (byte = b).
constexpr uint8_t kAdaptiveIndexFlag = 0x80;
constexpr uint8_t kRiceParameterMask = 0x1f;

bool IsFinite(float v) { return (std::bit_cast<uint32_t>(v) & 0x7f800000u) != 0x7f800000u; }

std::string_view ValueCodingName(ValueCoding c) {
  switch (c) {
    case ValueCoding::kTernary: return "ternary";
    case ValueCoding::kInt8: return "int8";
    case ValueCoding::kFp16: return "fp16";
    case ValueCoding::kFp32: return "fp32";
  }
  return "unknown";
}

size_t ValueParamBytes(ValueCoding c) {
  return (c == ValueCoding::kTernary || c == ValueCoding::kInt8) ? 4 : 0;
}

uint64_t ValueSectionBytes(ValueCoding c, uint64_t k) {
  switch (c) {
    case ValueCoding::kTernary: return (k + 7) / 8;
    case ValueCoding::kInt8: return k;
    case ValueCoding::kFp16: return 2 * k;
    case ValueCoding::kFp32: return 4 * k;
  }
  return 0;
}

// The one place a wire code turns into a value, shared by encoder and decoder so that
// what the encoder subtracts from its residual is bit-for-bit what the receiver adds.
inline float Int8Value(int8_t q, float scale) { return static_cast<float>(q) * scale; }

struct QuantizedValues {
  float param = 0.0f;            // ternary mu or int8 scale
  std::vector<float> sent;       // what the receiver will decode
  std::vector<uint8_t> section;  // the value section on the wire
};

QuantizedValues QuantizeValues(std::span<const float> v, ValueCoding coding) {
  QuantizedValues q;
  const size_t k = v.size();
  q.sent.resize(k);
  q.section.assign(ValueSectionBytes(coding, k), 0);
  switch (coding) {
    case ValueCoding::kTernary: {
      double sum = 0.0;
      for (float x : v) sum += std::fabs(x);
      const float mu = k ? static_cast<float>(sum / static_cast<double>(k)) : 0.0f;
      q.param = mu;
      for (size_t j = 0; j < k; ++j) {
        const bool negative = v[j] < 0.0f;
        q.sent[j] = negative ? -mu : mu;
        if (negative) q.section[j >> 3] |= static_cast<uint8_t>(1u << (j & 7));
      }
      break;
    }
    case ValueCoding::kInt8: {
      float max_abs = 0.0f;
      for (float x : v) max_abs = std::max(max_abs, std::fabs(x));
      const float scale = max_abs / 127.0f;
      q.param = scale;
      for (size_t j = 0; j < k; ++j) {
        const float r = scale > 0.0f ? std::nearbyint(v[j] / scale) : 0.0f;
        const int8_t code = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
        q.section[j] = static_cast<uint8_t>(code);
        q.sent[j] = Int8Value(code, scale);
      }
      break;
    }
    case ValueCoding::kFp16:
      for (size_t j = 0; j < k; ++j) {
        const uint16_t h = FloatToHalf(std::clamp(v[j], -kHalfMax, kHalfMax));
        PutU16(q.section.data() + 2 * j, h);
        q.sent[j] = HalfToFloat(h);
      }
      break;
    case ValueCoding::kFp32:
      PutF32Array(q.section.data(), v.data(), k);
      std::copy(v.begin(), v.end(), q.sent.begin());
      break;
  }
  return q;
}

Result<std::vector<uint8_t>> WriteSparsePayload(uint32_t dim, std::span<const uint32_t> indices, ValueCoding coding,
                                                const QuantizedValues& q, bool try_zstd) {
  // Plain Rice stays the fallback, so a section is never longer than version 1 made it.
  FRUGAL_ASSIGN_OR_RETURN(const IndexSection index, EncodeIndexSection(indices, dim));
  const uint8_t parameter_byte =
      static_cast<uint8_t>(index.rice_parameter) | (index.adaptive ? kAdaptiveIndexFlag : uint8_t{0});
  std::vector<uint8_t> body;
  body.reserve(kSparseFixedBytes + ValueParamBytes(coding) + index.bytes.size() + q.section.size());
  body.push_back(static_cast<uint8_t>(coding));
  body.push_back(parameter_byte);
  if (ValueParamBytes(coding) == 4) {
    uint8_t p[4];
    PutF32(p, q.param);
    body.insert(body.end(), p, p + 4);
  }
  body.insert(body.end(), index.bytes.begin(), index.bytes.end());
  body.insert(body.end(), q.section.begin(), q.section.end());

  FrameHeader header;
  header.codec = CodecId::kUplinkSparse;
  header.version = kUplinkSparseVersion;
  header.dim = dim;
  header.count = static_cast<uint32_t>(indices.size());
  std::vector<uint8_t> out;
  if (try_zstd) {
    std::vector<uint8_t> packed(ZSTD_compressBound(body.size()));
    const size_t n = ZSTD_compress(packed.data(), packed.size(), body.data(), body.size(), kZstdLevel);
    if (ZSTD_isError(n)) return InternalError(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
    if (n < body.size()) {
      packed.resize(n);
      header.flags |= kFlagZstd;
      FRUGAL_RETURN_IF_ERROR(AppendFrame(header, packed, &out));
      return out;
    }
  }
  FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &out));
  return out;
}

// Checks every value of `x` (plus `residual` if non-empty) is finite; names the first that is not.
Status CheckFiniteSum(std::span<const float> x, std::span<const float> residual) {
  uint32_t bad = 0;
  const size_t d = x.size();
  if (residual.empty()) {
    for (size_t i = 0; i < d; ++i) bad |= !IsFinite(x[i]);
  } else {
    for (size_t i = 0; i < d; ++i) bad |= !IsFinite(x[i] + residual[i]);
  }
  if (!bad) return OkStatus();
  for (size_t i = 0; i < d; ++i) {
    const float v = residual.empty() ? x[i] : x[i] + residual[i];
    if (!IsFinite(v)) {
      return InvalidArgumentError("update value at index " + std::to_string(i) + " is " +
                                  (std::isnan(v) ? "NaN" : "Inf") + (residual.empty() ? "" : " (after adding the residual)"));
    }
  }
  return OkStatus();
}

Status CheckDim(size_t d) {
  if (d == 0) return InvalidArgumentError("empty update (dimension 0)");
  if (d > kMaxCodecDim) {
    return ResourceExhaustedError("dimension " + std::to_string(d) + " exceeds the limit of " +
                                  std::to_string(kMaxCodecDim));
  }
  return OkStatus();
}

Status CheckValues(std::span<const float> values) {
  for (size_t j = 0; j < values.size(); ++j) {
    if (!IsFinite(values[j])) {
      return InvalidArgumentError(std::string("value ") + std::to_string(j) + " is " +
                                  (std::isnan(values[j]) ? "NaN" : "Inf"));
    }
  }
  return OkStatus();
}

Result<SparseUpdate> ParseDense(const ParsedFrame& f, UplinkInfo* info) {
  const FrameHeader& h = f.header;
  if (h.flags != 0) return InvalidArgumentError("unknown flags " + std::to_string(h.flags) + " on a dense uplink payload");
  if (h.count != h.dim) {
    return InvalidArgumentError("dense uplink count " + std::to_string(h.count) + " differs from dimension " +
                                std::to_string(h.dim));
  }
  if (f.body.size() != 4ull * h.dim) {
    return DataLossError("dense uplink body has " + std::to_string(f.body.size()) + " bytes, dimension " +
                         std::to_string(h.dim) + " needs " + std::to_string(4ull * h.dim));
  }
  SparseUpdate u;
  u.dim = h.dim;
  u.values.resize(h.dim);
  GetF32Array(f.body.data(), u.values.data(), h.dim);
  FRUGAL_RETURN_IF_ERROR(CheckValues(u.values));
  u.indices.resize(h.dim);
  for (uint32_t i = 0; i < h.dim; ++i) u.indices[i] = i;
  info->dense = true;
  info->values = ValueCoding::kFp32;
  info->value_bytes = f.body.size();
  return u;
}

Result<SparseUpdate> ParseSparse(const ParsedFrame& f, UplinkInfo* info) {
  const FrameHeader& h = f.header;
  if (h.flags & ~kFlagZstd) {
    return InvalidArgumentError("unknown flags " + std::to_string(h.flags) + " on a sparse uplink payload");
  }
  if (h.count > h.dim) {
    return OutOfRangeError("count " + std::to_string(h.count) + " exceeds dimension " + std::to_string(h.dim));
  }
  std::span<const uint8_t> body = f.body;
  std::vector<uint8_t> unpacked;
  if (h.flags & kFlagZstd) {
    // Largest body any valid payload of this dim and count can have, whatever its coding.
    const uint64_t max_raw = kSparseFixedBytes + 4 + 4ull * h.count +
                             (static_cast<uint64_t>(h.count) * (kMaxRiceParameter + 1) + h.dim) / 8 + 2;
    const unsigned long long size = ZSTD_getFrameContentSize(body.data(), body.size());
    if (size == ZSTD_CONTENTSIZE_ERROR) return DataLossError("zstd stage: not a valid zstd frame");
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) return InvalidArgumentError("zstd stage: frame does not declare its size");
    if (size > max_raw) {
      return ResourceExhaustedError("zstd stage declares " + std::to_string(size) + " bytes, more than the " +
                                    std::to_string(max_raw) + " this dimension and count allow");
    }
    const size_t frame_size = ZSTD_findFrameCompressedSize(body.data(), body.size());
    if (ZSTD_isError(frame_size) || frame_size != body.size()) {
      return DataLossError("zstd stage: frame is truncated or followed by extra bytes");
    }
    unpacked.resize(static_cast<size_t>(size));
    const size_t n = ZSTD_decompress(unpacked.data(), unpacked.size(), body.data(), body.size());
    if (ZSTD_isError(n)) return DataLossError(std::string("zstd stage: ") + ZSTD_getErrorName(n));
    if (n != size) return DataLossError("zstd stage: decompressed size differs from the declared size");
    body = unpacked;
    info->zstd = true;
  }
  if (body.size() < kSparseFixedBytes) return DataLossError("truncated sparse uplink body: no value coding byte");
  if (body[0] > static_cast<uint8_t>(ValueCoding::kFp32)) {
    return InvalidArgumentError("unknown value coding " + std::to_string(body[0]));
  }
  const auto coding = static_cast<ValueCoding>(body[0]);
  const bool adaptive = h.version >= 2 && (body[1] & kAdaptiveIndexFlag) != 0;
  if (h.version >= 2 && (body[1] & ~(kAdaptiveIndexFlag | kRiceParameterMask)) != 0) {
    return InvalidArgumentError("reserved bits set in the Rice parameter byte " + std::to_string(body[1]));
  }
  const int b = h.version >= 2 ? (body[1] & kRiceParameterMask) : body[1];
  if (b > kMaxRiceParameter) {
    return InvalidArgumentError("Rice parameter " + std::to_string(b) + " exceeds " + std::to_string(kMaxRiceParameter));
  }
  const uint64_t fixed = kSparseFixedBytes + ValueParamBytes(coding);
  const uint64_t value_bytes = ValueSectionBytes(coding, h.count);
  if (fixed + value_bytes > body.size()) {
    return DataLossError("truncated sparse uplink body: " + std::to_string(body.size()) + " bytes cannot hold " +
                         std::to_string(h.count) + " " + std::string(ValueCodingName(coding)) + " values");
  }
  float param = 0.0f;
  if (ValueParamBytes(coding) == 4) {
    param = GetF32(body.data() + kSparseFixedBytes);
    if (!IsFinite(param) || param < 0.0f) {
      return InvalidArgumentError(std::string(coding == ValueCoding::kTernary ? "ternary magnitude mu" : "int8 scale") +
                                  " is " + (std::isnan(param) ? "NaN" : std::isinf(param) ? "Inf" : "negative"));
    }
    if (coding == ValueCoding::kInt8 && !IsFinite(127.0f * param)) {
      return InvalidArgumentError("int8 scale " + std::to_string(param) + " overflows: 127 * scale is Inf");
    }
  }
  const size_t index_bytes = body.size() - fixed - value_bytes;
  SparseUpdate u;
  u.dim = h.dim;
  const std::span<const uint8_t> index_section = body.subspan(fixed, index_bytes);
  auto index_status = DecodeIndexSection(index_section, h.count, h.dim, b, adaptive);
  if (!index_status.ok()) return index_status.error().WithContext("index section");
  u.indices = std::move(index_status).value();

  const uint8_t* vs = body.data() + fixed + index_bytes;
  u.values.resize(h.count);
  switch (coding) {
    case ValueCoding::kTernary:
      for (uint32_t j = 0; j < h.count; ++j) u.values[j] = ((vs[j >> 3] >> (j & 7)) & 1) ? -param : param;
      if ((h.count & 7) != 0 && (vs[value_bytes - 1] >> (h.count & 7)) != 0) {
        return InvalidArgumentError("non-zero padding bits after the last ternary sign");
      }
      break;
    case ValueCoding::kInt8:
      for (uint32_t j = 0; j < h.count; ++j) {
        const auto code = static_cast<int8_t>(vs[j]);
        if (code == -128) return InvalidArgumentError("int8 code -128 at value " + std::to_string(j) + " is out of range");
        u.values[j] = Int8Value(code, param);
      }
      break;
    case ValueCoding::kFp16:
      for (uint32_t j = 0; j < h.count; ++j) {
        const uint16_t half = GetU16(vs + 2 * j);
        if (!HalfIsFinite(half)) {
          return InvalidArgumentError("fp16 value " + std::to_string(j) + " is " + ((half & 0x3ff) ? "NaN" : "Inf"));
        }
        u.values[j] = HalfToFloat(half);
      }
      break;
    case ValueCoding::kFp32:
      GetF32Array(vs, u.values.data(), h.count);
      FRUGAL_RETURN_IF_ERROR(CheckValues(u.values));
      break;
  }
  info->values = coding;
  info->rice_parameter = b;
  info->adaptive_indices = adaptive;
  info->index_bytes = index_bytes;
  info->value_bytes = value_bytes + ValueParamBytes(coding);
  return u;
}

Result<SparseUpdate> ParseUplink(std::span<const uint8_t> payload, uint32_t expected_dim, UplinkInfo* info) {
  FRUGAL_ASSIGN_OR_RETURN(ParsedFrame f, ParseFrame(payload));
  if (f.header.codec != CodecId::kUplinkSparse && f.header.codec != CodecId::kUplinkDense) {
    return InvalidArgumentError("codec id " + std::to_string(static_cast<int>(f.header.codec)) + " (" +
                                std::string(CodecName(f.header.codec)) + ") is not an uplink codec");
  }
  if (f.header.dim != expected_dim) {
    return InvalidArgumentError("dimension mismatch: payload declares " + std::to_string(f.header.dim) +
                                ", expected " + std::to_string(expected_dim));
  }
  if (f.header.dim == 0) return InvalidArgumentError("payload declares dimension 0");
  *info = UplinkInfo{};
  info->dim = f.header.dim;
  info->count = f.header.count;
  info->total_bytes = payload.size();
  if (f.header.codec == CodecId::kUplinkDense) return ParseDense(f, info);
  return ParseSparse(f, info);
}

}  // namespace

size_t UplinkKeepCount(double density, size_t d) {
  return std::clamp<size_t>(static_cast<size_t>(std::llround(density * static_cast<double>(d))), 1, d);
}

Result<std::vector<uint8_t>> EncodeUplink(std::span<const float> update, const UplinkConfig& cfg,
                                          std::span<float> residual) {
  const size_t d = update.size();
  FRUGAL_RETURN_IF_ERROR(CheckDim(d));
  if (!residual.empty() && residual.size() != d) {
    return InvalidArgumentError("residual has " + std::to_string(residual.size()) + " values, update has " +
                                std::to_string(d));
  }
  if (!cfg.dense && !(cfg.density > 0.0 && cfg.density <= 1.0)) {
    return InvalidArgumentError("density " + std::to_string(cfg.density) + " outside (0, 1]");
  }
  if (static_cast<uint8_t>(cfg.values) > static_cast<uint8_t>(ValueCoding::kFp32)) {
    return InvalidArgumentError("unknown value coding " + std::to_string(static_cast<int>(cfg.values)));
  }
  if (cfg.block < 1 || cfg.block > kMaxSelectBlock) {
    return InvalidArgumentError("selection block " + std::to_string(cfg.block) + " outside 1.." +
                                std::to_string(kMaxSelectBlock));
  }
  FRUGAL_RETURN_IF_ERROR(CheckFiniteSum(update, residual));

  std::span<const float> acc = update;
  if (!residual.empty()) {
    for (size_t i = 0; i < d; ++i) residual[i] += update[i];
    acc = residual;
  }
  if (cfg.dense) {
    FrameHeader header;
    header.codec = CodecId::kUplinkDense;
    header.dim = static_cast<uint32_t>(d);
    header.count = static_cast<uint32_t>(d);
    std::vector<uint8_t> out;
    out.reserve(kFrameHeaderSize + 4 * d);
    std::vector<uint8_t> body(4 * d);
    PutF32Array(body.data(), acc.data(), d);
    FRUGAL_RETURN_IF_ERROR(AppendFrame(header, body, &out));
    std::fill(residual.begin(), residual.end(), 0.0f);
    return out;
  }
  const size_t k = UplinkKeepCount(cfg.density, d);
  const std::vector<uint32_t> indices =
      cfg.block > 1    ? TopKBlocks(acc, cfg.block, (k + cfg.block - 1) / cfg.block)
      : cfg.exact_topk ? TopKExact(acc, k)
                       : TopKSampled(acc, k);
  std::vector<float> picked(indices.size());
  for (size_t j = 0; j < indices.size(); ++j) picked[j] = acc[indices[j]];
  const QuantizedValues q = QuantizeValues(picked, cfg.values);
  if (!residual.empty()) {
    for (size_t j = 0; j < indices.size(); ++j) residual[indices[j]] = picked[j] - q.sent[j];
  }
  return WriteSparsePayload(static_cast<uint32_t>(d), indices, cfg.values, q, cfg.try_zstd);
}

Result<SparseUpdate> DecodeUplink(std::span<const uint8_t> payload, uint32_t expected_dim) {
  UplinkInfo info;
  return ParseUplink(payload, expected_dim, &info);
}

Result<UplinkInfo> InspectUplink(std::span<const uint8_t> payload, uint32_t expected_dim) {
  UplinkInfo info;
  FRUGAL_RETURN_IF_ERROR(ParseUplink(payload, expected_dim, &info).status());
  return info;
}

Status ValidateSparseUpdate(const SparseUpdate& update, uint32_t expected_dim) {
  if (update.dim != expected_dim) {
    return InvalidArgumentError("dimension mismatch: update has " + std::to_string(update.dim) + ", expected " +
                                std::to_string(expected_dim));
  }
  FRUGAL_RETURN_IF_ERROR(CheckDim(update.dim));
  if (update.indices.size() != update.values.size()) {
    return InvalidArgumentError(std::to_string(update.indices.size()) + " indices but " +
                                std::to_string(update.values.size()) + " values");
  }
  if (update.indices.size() > update.dim) {
    return OutOfRangeError("count " + std::to_string(update.indices.size()) + " exceeds dimension " +
                           std::to_string(update.dim));
  }
  for (size_t j = 0; j < update.indices.size(); ++j) {
    if (update.indices[j] >= update.dim) {
      return OutOfRangeError("index " + std::to_string(update.indices[j]) + " at position " + std::to_string(j) +
                             " is >= dimension " + std::to_string(update.dim));
    }
    if (j > 0 && update.indices[j] <= update.indices[j - 1]) {
      return InvalidArgumentError("indices not strictly increasing at position " + std::to_string(j) + " (" +
                                  std::to_string(update.indices[j - 1]) + " then " +
                                  std::to_string(update.indices[j]) + ")");
    }
  }
  return CheckValues(update.values);
}

Result<std::vector<uint8_t>> EncodeSparseUpdate(const SparseUpdate& update, ValueCoding values, bool try_zstd) {
  FRUGAL_RETURN_IF_ERROR(ValidateSparseUpdate(update, update.dim));
  if (static_cast<uint8_t>(values) > static_cast<uint8_t>(ValueCoding::kFp32)) {
    return InvalidArgumentError("unknown value coding " + std::to_string(static_cast<int>(values)));
  }
  const QuantizedValues q = QuantizeValues(update.values, values);
  return WriteSparsePayload(update.dim, update.indices, values, q, try_zstd);
}

}  // namespace frugal
