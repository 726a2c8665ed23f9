// Shared by the fuzz targets and the seed-corpus generator: the dimension a
// target expects for an input, the base model a delta is decoded against, and
// the invariant checks that turn a wrong-but-accepted decode into a crash.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "frugal/codec/frame.h"

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
