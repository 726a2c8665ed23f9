// The one varint helper (frugal/codec/varint.h): round trips at every width
// boundary against a plain reference encoding, and the strict reader's refusals.
#include "frugal/codec/varint.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace frugal {
namespace {

// LEB128 written out byte by byte, the reference the helper is checked against.
std::vector<uint8_t> Reference(uint64_t v) {
  std::vector<uint8_t> out;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v != 0) b |= 0x80;
    out.push_back(b);
  } while (v != 0);
  return out;
}

TEST_SUITE("codec") {

TEST_CASE("varints round-trip at every width boundary and match a plain LEB128 encoding") {
  std::vector<uint64_t> values = {0, 1, 127, 128, 255, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
  for (int s = 7; s < 64; s += 7) {
    values.push_back((uint64_t{1} << s) - 1);
    values.push_back(uint64_t{1} << s);
  }
  for (uint64_t v : values) {
    std::vector<uint8_t> out;
    PutVarint(out, v);
    CHECK(out == Reference(v));
    CHECK(out.size() == VarintSize(v));
    size_t pos = 0;
    uint64_t back = 0;
    REQUIRE(GetVarint(out, &pos, UINT64_MAX, &back) == VarintError::kOk);
    CHECK(back == v);
    CHECK(pos == out.size());
  }
}

TEST_CASE("the varint reader refuses truncated, overlong and too large encodings and leaves the position") {
  uint64_t v = 0;
  size_t pos = 0;
  const std::vector<uint8_t> truncated = {0x80, 0x80};
  CHECK(GetVarint(truncated, &pos, UINT64_MAX, &v) == VarintError::kTruncated);
  CHECK(pos == 0);
  CHECK(GetVarint(std::span<const uint8_t>(), &pos, UINT64_MAX, &v) == VarintError::kTruncated);
  const std::vector<uint8_t> overlong = {0x80, 0x00};  // 0 in two bytes
  CHECK(GetVarint(overlong, &pos, UINT64_MAX, &v) == VarintError::kOverlong);
  const std::vector<uint8_t> overlong5 = {0x85, 0x80, 0x00};  // 5 in three bytes
  CHECK(GetVarint(overlong5, &pos, UINT64_MAX, &v) == VarintError::kOverlong);
  std::vector<uint8_t> big;
  PutVarint(big, uint64_t{UINT32_MAX} + 1);
  CHECK(GetVarint(big, &pos, UINT32_MAX, &v) == VarintError::kTooLarge);
  const std::vector<uint8_t> eleven(10, 0xff);  // would need an eleventh byte
  CHECK(GetVarint(eleven, &pos, UINT64_MAX, &v) == VarintError::kTooLarge);
  std::vector<uint8_t> past64(9, 0xff);
  past64.push_back(0x02);  // bit 64
  CHECK(GetVarint(past64, &pos, UINT64_MAX, &v) == VarintError::kTooLarge);
  CHECK(pos == 0);
  CHECK(std::string(VarintErrorText(VarintError::kOverlong)).find("overlong") != std::string::npos);
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal
