// libFuzzer target for DecodeRiceIndices. Input: u16 count, u32 dim, u8 Rice parameter,
// then the coded bytes. Accepted input must decode to valid indices whose re-encoding
// reproduces the bytes exactly (the coding is canonical).
#include <cstdint>
#include <vector>

#include "frugal/codec/golomb.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  if (size < 7) return 0;
  const uint32_t count = uint32_t{data[0]} | (uint32_t{data[1]} << 8);
  uint32_t dim = uint32_t{data[2]} | (uint32_t{data[3]} << 8) | (uint32_t{data[4]} << 16) | (uint32_t{data[5]} << 24);
  dim %= fuzz::kMaxFuzzDim + 1;
  const int b = data[6] % (kMaxRiceParameter + 2);  // one beyond the limit, to test rejection
  const std::span<const uint8_t> bytes(data + 7, size - 7);
  auto r = DecodeRiceIndices(bytes, count, dim, b);
  if (!r.ok()) return 0;
  fuzz::Require(r->size() == count);
  fuzz::Require(fuzz::StrictlyIncreasingBelow(*r, dim));
  auto again = EncodeRiceIndices(*r, dim, b);
  fuzz::Require(again.ok());
  fuzz::Require(std::vector<uint8_t>(bytes.begin(), bytes.end()) == *again);
  return 0;
}
