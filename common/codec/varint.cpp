#include "frugal/codec/varint.h"

namespace frugal {

void PutVarint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

const char* VarintErrorText(VarintError e) {
  switch (e) {
    case VarintError::kOk: return "ok";
    case VarintError::kTruncated: return "truncated varint";
    case VarintError::kOverlong: return "overlong varint (a non-canonical form)";
    case VarintError::kTooLarge: return "varint value too large";
  }
  return "varint error";
}

VarintError GetVarint(std::span<const uint8_t> bytes, size_t* pos, uint64_t max, uint64_t* v) {
  uint64_t value = 0;
  size_t at = *pos;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= bytes.size()) return VarintError::kTruncated;
    const uint8_t b = bytes[at++];
    const uint64_t group = b & 0x7f;
    // The tenth byte holds bit 63 alone; anything above it does not fit 64 bits.
    if (shift == 63 && group > 1) return VarintError::kTooLarge;
    value |= group << shift;
    if ((b & 0x80) == 0) {
      if (b == 0 && shift > 0) return VarintError::kOverlong;
      if (value > max) return VarintError::kTooLarge;
      *v = value;
      *pos = at;
      return VarintError::kOk;
    }
  }
  return VarintError::kTooLarge;  // an eleventh byte would be needed
}

}  // namespace frugal
