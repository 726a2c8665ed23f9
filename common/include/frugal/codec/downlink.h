// Downlink codec (coordinator -> client): block-wise uniform quantization of a
// model, or of its delta against the copy the client holds, at 8/4/2 bits with
// fp16 per-block offset and scale; or lossless fp32. Also a chain of sparse
// broadcast steps coded as one payload (EncodeMergedSteps), losslessly.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"

namespace frugal {

struct DownlinkConfig {
  int bits = 8;               // 8, 4 or 2; 0 = lossless fp32 (always a full model)
  uint32_t block_size = 256;  // values sharing one offset and scale, 1..65536
  bool stochastic = false;    // stochastic rounding (unbiased), seeded by `seed`
  uint64_t seed = 0;
};

struct DownlinkEncoded {
  std::vector<uint8_t> bytes;
  std::vector<float> reconstruction;  // exactly what the client will hold after decoding
};

// Full model when base is empty, else delta against base (the copy the client holds).
// Deterministic rounding: |reconstruction - target| <= scale/2 per element (plus float
// rounding of the sum in delta mode); stochastic: < scale. Fails on non-finite input,
// size mismatch, unsupported bits or block size.
Result<DownlinkEncoded> EncodeDownlink(std::span<const float> target, std::span<const float> base,
                                       const DownlinkConfig& cfg);
// Decodes a downlink payload; `base` must be the copy the sender assumed for a delta (its
// CRC32 is checked) and is ignored for a full model. Bit-exact with the encoder's
// reconstruction. Never reads outside `payload`; every defect is an Error naming it.
Result<std::vector<float>> DecodeDownlink(std::span<const uint8_t> payload, std::span<const float> base,
                                          uint32_t expected_dim);

// Bits per parameter and block size of a payload, for benchmarks and logs.
struct DownlinkInfo {
  int bits = 0;          // 0 for fp32
  bool delta = false;
  bool fp32_params = false;  // per-block offset/scale stored as fp32 (values beyond fp16 range)
  uint32_t dim = 0;
  uint32_t block_size = 0;
};
// Parses the header and fixed fields (checksum included) without decoding values.
Result<DownlinkInfo> InspectDownlink(std::span<const uint8_t> payload, uint32_t expected_dim);

// A chain of sparse steps (the broadcast steps a client missed, in order) as one
// payload: the union of their supports is coded once (Rice / adaptive Rice), each
// step's distinct values once (a level table: two floats for a ternary step), and
// for every coordinate of the union which steps touched it and at which level,
// range-coded with adaptive contexts (consecutive top-k supports overlap, and a
// coordinate's sign tends to repeat). Lossless: DecodeMergedSteps returns the
// steps exactly (same indices, bit-identical values), so a client that applies
// them in order holds bit for bit what applying the chain gives.
inline constexpr uint32_t kMaxMergedSteps = 4096;
inline constexpr uint32_t kMaxMergedLevels = 255;  // distinct values in one step
// Fails (InvalidArgument) on no steps or more than kMaxMergedSteps, a step of
// another dimension, unsorted or out-of-range indices, a non-finite value, or a
// step with more than kMaxMergedLevels distinct values; ResourceExhausted when
// (union size) x (steps) > 2^24. Callers then send the chain as it is.
// `version` picks the format (docs/codecs.md, "Downlink, merged steps"): 1; 2,
// which sends a step whose two values are -m and +m (every ternary step) as m
// alone, 4 bytes fewer a step; or 3, version 2 with the union coded as its part
// in `guide` (the secure round's support guide, ascending coordinates, which
// the client holds too) and its part outside, and the symbols told which part a
// coordinate is in. Anything else is InvalidArgument; all lossless. `guide` is
// read by version 3 only (empty: no coordinate is in it).
Result<std::vector<uint8_t>> EncodeMergedSteps(std::span<const SparseUpdate> steps, uint32_t dim,
                                               uint8_t version = 1, std::span<const uint32_t> guide = {});
// Decodes a merged-steps payload of dimension expected_dim into its steps. Never
// reads outside `payload`; work and memory are bounded by (union size) x (steps)
// <= 2^24 (ResourceExhausted past it, from the encoder too); input
// that is not exactly what EncodeMergedSteps writes for what it decodes to is
// refused; every defect is an Error naming it. Reads versions 1 to 3; version 3
// needs the encoder's `guide` (refused on a CRC32 mismatch: "another guide").
Result<std::vector<SparseUpdate>> DecodeMergedSteps(std::span<const uint8_t> payload, uint32_t expected_dim,
                                                    std::span<const uint32_t> guide = {});

// Version 4 (docs/codecs.md, "Version 4"): each step's positions coded given
// its own round's shared support S_r, which both sides rebuild from the steps
// before it (the client's kept steps, then the piece's steps decoded so far).
// One round's support: `support` ascending inside dim, `guide` the ascending
// part of it that came from the guide (the rest is the rand-k half).
struct StepSupport {
  std::vector<uint32_t> support;
  std::vector<uint32_t> guide;
};
// Round `round`'s support for the step that follows `before` (the piece's
// steps already coded, oldest first). Called once per step, in order.
using StepSupportFn = std::function<Result<StepSupport>(uint32_t round, std::span<const SparseUpdate> before)>;
struct MergedStepsV4 {
  std::vector<SparseUpdate> steps;
  std::vector<uint32_t> rounds;  // the round that produced each step, strictly ascending
};
// Encodes `steps` (produced by rounds `rounds`, strictly ascending, >= 1) as a
// version-4 merged piece; the same failures as EncodeMergedSteps, and
// InvalidArgument on rounds that do not match the steps or an invalid support
// from `supports` (whose errors pass through). Lossless.
Result<std::vector<uint8_t>> EncodeMergedStepsV4(std::span<const SparseUpdate> steps, std::span<const uint32_t> rounds,
                                                 uint32_t dim, const StepSupportFn& supports);
// Decodes a version-4 piece of dimension expected_dim, asking `supports` for
// each step's support as it goes. Never reads outside `payload`; work bounded
// by the sum of the supports' sizes <= 2^24 decisions; non-canonical input
// (anything EncodeMergedStepsV4 would not write for what it decodes to, e.g.
// when the client's supports differ from the encoder's) is refused; every
// defect an Error naming it.
Result<MergedStepsV4> DecodeMergedStepsV4(std::span<const uint8_t> payload, uint32_t expected_dim,
                                          const StepSupportFn& supports);
// The format version of a merged-steps payload (its frame's version byte), or an error.
Result<uint8_t> MergedStepsVersion(std::span<const uint8_t> payload);

}  // namespace frugal
