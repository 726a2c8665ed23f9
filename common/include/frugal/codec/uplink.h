// Uplink codec (client -> coordinator): top-k sparsification with error
// feedback, values coded ternary (STC), int8, fp16 or fp32, indices coded
// Golomb-Rice (plain, or adaptive: range-coded, whichever is shorter), optional
// zstd stage; or the dense fp32 baseline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

enum class ValueCoding : uint8_t { kTernary, kInt8, kFp16, kFp32 };

// The largest selection block UplinkConfig::block may ask for.
inline constexpr uint32_t kMaxSelectBlock = 4096;

struct UplinkConfig {
  bool dense = false;        // dense fp32 baseline (header + 4*d bytes); ignores the rest
  double density = 0.01;     // k = round(density * d), at least 1; in (0, 1]
  ValueCoding values = ValueCoding::kTernary;
  bool exact_topk = true;    // false: sampled-threshold selection (same set, faster on large d)
  bool try_zstd = false;     // compress the body with zstd; kept only when smaller
  // > 1: block top-k (TopKBlocks): ceil(k / block) whole blocks of `block` consecutive
  // entries by summed |x|, their non-zero entries sent. Still a codec-1 frame; set only for
  // the server's broadcast steps (downlink.broadcast_block). exact_topk is not used then.
  uint32_t block = 1;
};

// Dense mode decodes to indices 0..d-1.
struct SparseUpdate {
  uint32_t dim = 0;
  std::vector<uint32_t> indices;
  std::vector<float> values;
};

// Values a sparse uplink of `density` keeps of `d`: round(density * d), at least 1, at most d.
size_t UplinkKeepCount(double density, size_t d);

// Adds `residual` (if non-empty, same size) to `update`, selects + quantizes, writes what
// was not sent back into `residual`. Thread-compatible (no shared state). Fails on
// non-finite input, size mismatch, d = 0 or d > kMaxCodecDim, or density outside (0, 1].
Result<std::vector<uint8_t>> EncodeUplink(std::span<const float> update, const UplinkConfig& cfg,
                                          std::span<float> residual);
// Decodes and validates a payload (any uplink codec) whose dimension must be expected_dim.
// Never reads outside `payload`; every defect is an Error naming it.
Result<SparseUpdate> DecodeUplink(std::span<const uint8_t> payload, uint32_t expected_dim);

// Codes an already-sparse update (indices strictly increasing and < dim, values finite)
// with the given value coding; what the receiver gets is DecodeUplink of the result.
Result<std::vector<uint8_t>> EncodeSparseUpdate(const SparseUpdate& update, ValueCoding values,
                                                bool try_zstd = false);
// Ok if indices are strictly increasing and < dim, values finite and as many as indices,
// and dim == expected_dim.
Status ValidateSparseUpdate(const SparseUpdate& update, uint32_t expected_dim);

// What an uplink payload is made of, for benchmarks and logs.
struct UplinkInfo {
  bool dense = false;
  uint32_t dim = 0;
  uint32_t count = 0;       // entries sent
  ValueCoding values = ValueCoding::kFp32;
  int rice_parameter = 0;
  bool adaptive_indices = false;  // index section is adaptive Rice (version 2), else plain Rice
  bool zstd = false;
  size_t total_bytes = 0;   // whole payload
  size_t index_bytes = 0;   // index section (uncompressed)
  size_t value_bytes = 0;   // value parameter + value section (uncompressed)
};
// Parses and fully validates a payload like DecodeUplink, returning its layout.
Result<UplinkInfo> InspectUplink(std::span<const uint8_t> payload, uint32_t expected_dim);

}  // namespace frugal
