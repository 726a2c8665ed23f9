#include "frugal/codec/shared_support.h"

#include <algorithm>
#include <string>

#include "byte_io.h"
#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {

namespace {
// Keeps the support's stream apart from every other use of a round's seed.
constexpr uint64_t kSupportStream = 0x5348415245445355ULL;  // "SHAREDSU"
}  // namespace

Result<std::vector<uint32_t>> SharedSupportOfSize(uint64_t seed, size_t dim, size_t k) {
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("shared support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  if (k == 0 || k > dim) {
    return InvalidArgumentError("shared support: " + std::to_string(k) + " coordinates of " + std::to_string(dim));
  }
  // Floyd's sampling: k draws give a uniform k-subset, O(k) work and a bitmap of
  // dim bits; the set (not the draw order) is what counts, and it is sorted below.
  Rng rng(DeriveSeed(seed, kSupportStream));
  std::vector<bool> taken(dim, false);
  std::vector<uint32_t> out;
  out.reserve(k);
  for (size_t j = dim - k; j < dim; ++j) {
    const auto t = static_cast<size_t>(rng.UniformInt(j + 1));
    const size_t pick = taken[t] ? j : t;
    taken[pick] = true;
    out.push_back(static_cast<uint32_t>(pick));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<uint32_t>> SharedSupport(uint64_t seed, size_t dim, double density) {
  if (!(density > 0.0 && density <= 1.0)) {
    return InvalidArgumentError("shared support: density " + std::to_string(density) + " outside (0, 1]");
  }
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("shared support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  return SharedSupportOfSize(seed, dim, UplinkKeepCount(density, dim));
}

uint64_t SharedSupportSeed(uint64_t run_seed, uint32_t round) {
  return DeriveSeed(DeriveSeed(run_seed, kSupportStream), round);
}

Result<std::vector<uint32_t>> GuidedSupport(uint64_t seed, size_t dim, size_t k, std::span<const uint32_t> guided) {
  if (dim == 0 || dim > kMaxCodecDim) {
    return InvalidArgumentError("guided support: dimension " + std::to_string(dim) + " outside 1.." +
                                std::to_string(kMaxCodecDim));
  }
  if (k == 0 || k > dim) {
    return InvalidArgumentError("guided support: " + std::to_string(k) + " coordinates of " + std::to_string(dim));
  }
  if (guided.size() > k) {
    return InvalidArgumentError("guided support: a guide of " + std::to_string(guided.size()) + " coordinates for a " +
                                "support of " + std::to_string(k));
  }
  for (size_t j = 0; j < guided.size(); ++j) {
    if (guided[j] >= dim || (j > 0 && guided[j] <= guided[j - 1])) {
      return InvalidArgumentError("guided support: guide entry " + std::to_string(j) +
                                  " is out of range or not ascending");
    }
  }
  if (guided.empty()) return SharedSupportOfSize(seed, dim, k);
  std::vector<uint32_t> out(guided.begin(), guided.end());
  const size_t rest = k - guided.size();
  if (rest > 0) {
    // The explored part: a uniform draw from the coordinates outside the guide,
    // the same Floyd sampling on positions of the complement.
    std::vector<uint32_t> complement;
    complement.reserve(dim - guided.size());
    size_t g = 0;
    for (uint32_t i = 0; i < dim; ++i) {
      if (g < guided.size() && guided[g] == i) {
        ++g;
      } else {
        complement.push_back(i);
      }
    }
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> picks, SharedSupportOfSize(seed, complement.size(), rest));
    for (uint32_t p : picks) out.push_back(complement[p]);
    std::sort(out.begin(), out.end());
  }
  return out;
}

std::vector<uint32_t> TopScoreCoordinates(std::span<const float> score, size_t m) {
  std::vector<uint32_t> cand;
  for (size_t i = 0; i < score.size(); ++i) {
    if (score[i] > 0) cand.push_back(static_cast<uint32_t>(i));
  }
  if (cand.size() > m) {
    auto before = [&](uint32_t a, uint32_t b) { return score[a] != score[b] ? score[a] > score[b] : a < b; };
    std::nth_element(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(m), cand.end(), before);
    cand.resize(m);
  }
  std::sort(cand.begin(), cand.end());
  return cand;
}

namespace {
constexpr size_t kGuideHeader = 8;
std::string DimError(uint32_t dim) {
  return "support guide: dimension " + std::to_string(dim) + " outside 1.." + std::to_string(kMaxCodecDim);
}
}  // namespace

std::vector<uint32_t> ExpandGuideBlocks(std::span<const uint32_t> blocks, uint32_t dim, uint32_t block_size) {
  std::vector<uint32_t> out;
  for (uint32_t b : blocks) {
    const uint64_t lo = uint64_t{b} * block_size;
    const uint64_t hi = std::min<uint64_t>(lo + block_size, dim);
    for (uint64_t i = lo; i < hi; ++i) out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

Result<std::vector<uint8_t>> EncodeSupportGuide(std::span<const uint32_t> blocks, uint32_t dim, uint32_t block_size) {
  if (dim == 0 || dim > kMaxCodecDim) return InvalidArgumentError(DimError(dim));
  if (block_size == 0 || block_size > 0xffff) {
    return InvalidArgumentError("support guide: block size " + std::to_string(block_size) + " outside 1..65535");
  }
  const auto nblocks = static_cast<uint32_t>((uint64_t{dim} + block_size - 1) / block_size);
  FRUGAL_RETURN_IF_ERROR(CheckSortedIndices(blocks, nblocks));
  std::vector<uint8_t> out(kGuideHeader, 0);
  PutU32(out.data(), static_cast<uint32_t>(blocks.size()));
  PutU16(out.data() + 4, static_cast<uint16_t>(block_size));
  if (blocks.empty()) return out;
  FRUGAL_ASSIGN_OR_RETURN(IndexSection section, EncodeIndexSection(blocks, nblocks));
  out[6] = static_cast<uint8_t>(section.rice_parameter);
  out[7] = section.adaptive ? 1 : 0;
  out.insert(out.end(), section.bytes.begin(), section.bytes.end());
  return out;
}

Result<std::vector<uint32_t>> DecodeSupportGuide(std::span<const uint8_t> bytes, uint32_t dim, uint32_t max_count) {
  if (dim == 0 || dim > kMaxCodecDim) return InvalidArgumentError(DimError(dim));
  if (bytes.size() < kGuideHeader) {
    return InvalidArgumentError("support guide: " + std::to_string(bytes.size()) + " bytes, shorter than its " +
                                std::to_string(kGuideHeader) + "-byte header");
  }
  const uint32_t count = GetU32(bytes.data());
  const uint32_t block_size = GetU16(bytes.data() + 4);
  const int b = bytes[6];
  const uint8_t adaptive = bytes[7];
  if (block_size == 0) return InvalidArgumentError("support guide: block size 0");
  const auto nblocks = static_cast<uint32_t>((uint64_t{dim} + block_size - 1) / block_size);
  // Each block but the last holds block_size coordinates: bound the count before decoding.
  if (count > nblocks || (count > 0 && uint64_t{count - 1} * block_size + 1 > max_count)) {
    return InvalidArgumentError("support guide: " + std::to_string(count) + " blocks of " +
                                std::to_string(block_size) + " exceed the model's " + std::to_string(nblocks) +
                                " blocks or the support's " + std::to_string(max_count) + " coordinates");
  }
  if (b > kMaxRiceParameter || adaptive > 1) {
    return InvalidArgumentError("support guide: Rice parameter " + std::to_string(b) + " or adaptive flag " +
                                std::to_string(adaptive) + " out of range");
  }
  const std::span<const uint8_t> body = bytes.subspan(kGuideHeader);
  if (count == 0) {
    if (b != 0 || adaptive != 0 || !body.empty()) return InvalidArgumentError("support guide: an empty guide with a body");
    return std::vector<uint32_t>{};
  }
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> blocks, DecodeIndexSection(body, count, nblocks, b, adaptive == 1));
  // One byte string per guide: anything the encoder would not have sent is refused.
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> again, EncodeSupportGuide(blocks, dim, block_size));
  if (!std::equal(again.begin(), again.end(), bytes.begin(), bytes.end())) {
    return InvalidArgumentError("support guide: not the canonical encoding of its blocks");
  }
  std::vector<uint32_t> out = ExpandGuideBlocks(blocks, dim, block_size);
  if (out.size() > max_count) {
    return InvalidArgumentError("support guide: " + std::to_string(out.size()) + " coordinates, the support has " +
                                std::to_string(max_count));
  }
  return out;
}

}  // namespace frugal
