// Shared by the fuzz targets and the seed-corpus generator: the dimension a
// target expects for an input, the base model a delta is decoded against, and
// the invariant checks that turn a wrong-but-accepted decode into a crash.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "frugal/privacy/secure_pipeline.h"

namespace frugal::fuzz {

// Keeps each run small and fast: a caller never expects more parameters than this here.
inline constexpr uint32_t kMaxFuzzDim = 1u << 16;

// The dimension the payload declares when plausible, so mutations reach the body decoders.
inline uint32_t ExpectedDim(std::span<const uint8_t> in) {
  if (in.size() < kFrameHeaderSize) return 1000;
  const uint32_t dim = uint32_t{in[8]} | (uint32_t{in[9]} << 8) | (uint32_t{in[10]} << 16) | (uint32_t{in[11]} << 24);
  return dim <= kMaxFuzzDim ? dim : 1000;
}

// The support guide the seed corpus's merged pieces of format version 3 were
// coded against: blocks of 16 coordinates, every third one (as a secure
// round's guide is blocks of secure.guide_block).
inline std::vector<uint32_t> Guide(uint32_t dim) {
  std::vector<uint32_t> g;
  for (uint32_t i = 0; i < dim; ++i) {
    if ((i / 16) % 3 == 0) g.push_back(i);
  }
  return g;
}

// The secure plan and the client's kept steps the seed corpus's merged pieces
// of format version 4 were coded against (two steps, guide_rounds 2).
inline privacy::SecurePipelineConfig V4Plan() {
  privacy::SecurePipelineConfig cfg;
  cfg.support_seed = 5;
  cfg.guided = 0.01;
  cfg.guide_rounds = 2;
  cfg.guide_block = 4;
  return cfg;
}
inline constexpr double kV4Density = 0.02;
inline std::vector<SparseUpdate> V4History(uint32_t dim) {
  std::vector<SparseUpdate> h(2);
  for (uint32_t t = 0; t < 2; ++t) {
    h[t].dim = dim;
    for (uint32_t i = t; i < dim; i += 7 + 4 * t) {
      h[t].indices.push_back(i);
      h[t].values.push_back((i / 7) % 2 ? 0.01f : -0.01f);
    }
  }
  return h;
}
inline StepSupportFn V4Supports(uint32_t dim) {
  return privacy::StepSupportsFromHistory(V4History(dim), V4Plan(), kV4Density, dim);
}

// The model the seed corpus's delta payloads were made against.
inline std::vector<float> Base(uint32_t dim) {
  std::vector<float> b(dim);
  for (uint32_t i = 0; i < dim; ++i) b[i] = 0.01f * static_cast<float>(i % 97) - 0.4f;
  return b;
}

// Aborts (so libFuzzer reports it) unless the condition holds.
inline void Require(bool ok) {
  if (!ok) std::abort();
}

inline bool AllFinite(std::span<const float> v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

inline bool StrictlyIncreasingBelow(std::span<const uint32_t> idx, uint32_t dim) {
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] >= dim || (i > 0 && idx[i] <= idx[i - 1])) return false;
  }
  return true;
}

}  // namespace frugal::fuzz
