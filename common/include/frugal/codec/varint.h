// Unsigned LEB128 varints: 7 bits a byte, least significant group first, the
// high bit set on every byte but the last. The one varint helper of the code
// base (the SecAgg+ messages' counts and positions use it). The reader is
// strict, so an encoding has exactly one form: it refuses truncation, a value
// past the requested width, and an overlong form (a final zero byte after the
// first, e.g. 0x80 0x00 for 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal {

// Appends the varint of `v` (1 to 10 bytes).
void PutVarint(std::vector<uint8_t>& out, uint64_t v);
// Bytes PutVarint writes for `v`.
size_t VarintSize(uint64_t v);

enum class VarintError { kOk, kTruncated, kOverlong, kTooLarge };
// "truncated varint", "overlong varint (a non-canonical form)", "varint value too large".
const char* VarintErrorText(VarintError e);

// Reads one varint at bytes[*pos] that must be at most `max` (e.g. UINT32_MAX
// for a u32 field), advancing *pos past it on success; *pos is unchanged on
// an error.
VarintError GetVarint(std::span<const uint8_t> bytes, size_t* pos, uint64_t max, uint64_t* v);

}  // namespace frugal
