// libFuzzer target for the index-section decoders: DecodeRiceIndices (plain Rice) and
// DecodeAdaptiveRiceIndices / DecodeIndexSection (adaptive Rice, uplink version 2).
// Input: u16 count, u32 dim, u8 mode (bit 7: adaptive; low bits: Rice parameter, up to
// one beyond the limit to test rejection), then the coded bytes. Accepted input must
// decode to valid indices whose re-encoding reproduces the bytes exactly (both codes
// are canonical). The same coded bytes also go through DecodeSupportGuide (the secure
// pipeline's guide: its own header, then an index section) at that dim, at most count
// indices, under the same canonical rule.
#include <cstdint>
#include <vector>

#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/shared_support.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  if (size < 7) return 0;
  const uint32_t count = uint32_t{data[0]} | (uint32_t{data[1]} << 8);
  uint32_t dim = uint32_t{data[2]} | (uint32_t{data[3]} << 8) | (uint32_t{data[4]} << 16) | (uint32_t{data[5]} << 24);
  dim %= fuzz::kMaxFuzzDim + 1;
  const bool adaptive = (data[6] & 0x80) != 0;
  const int b = (data[6] & 0x7f) % (kMaxRiceParameter + 2);
  const std::span<const uint8_t> bytes(data + 7, size - 7);
  const std::vector<uint8_t> input(bytes.begin(), bytes.end());
  if (auto guide = DecodeSupportGuide(bytes, dim, count); guide.ok()) {
    fuzz::Require(guide->size() <= count);
    fuzz::Require(fuzz::StrictlyIncreasingBelow(*guide, dim));
    const uint32_t block = uint32_t{bytes[4]} | (uint32_t{bytes[5]} << 8);
    std::vector<uint32_t> blocks;
    for (uint32_t i : *guide) {
      if (blocks.empty() || blocks.back() != i / block) blocks.push_back(i / block);
    }
    fuzz::Require(ExpandGuideBlocks(blocks, dim, block) == *guide);
    auto again = EncodeSupportGuide(blocks, dim, block);
    fuzz::Require(again.ok() && input == *again);
  }
  if (!adaptive) {
    auto r = DecodeRiceIndices(bytes, count, dim, b);
    if (!r.ok()) return 0;
    fuzz::Require(r->size() == count);
    fuzz::Require(fuzz::StrictlyIncreasingBelow(*r, dim));
    auto again = EncodeRiceIndices(*r, dim, b);
    fuzz::Require(again.ok());
    fuzz::Require(input == *again);
    return 0;
  }
  auto r = DecodeAdaptiveRiceIndices(bytes, count, dim, b);
  auto section = DecodeIndexSection(bytes, count, dim, b, true);
  if (section.ok()) fuzz::Require(r.ok() && *r == *section);  // the section adds one rule to the coder
  if (!r.ok()) return 0;
  fuzz::Require(r->size() == count);
  fuzz::Require(fuzz::StrictlyIncreasingBelow(*r, dim));
  auto again = EncodeAdaptiveRiceIndices(*r, dim, b);
  fuzz::Require(again.ok());
  fuzz::Require(input == *again);
  return 0;
}
