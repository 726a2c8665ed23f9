// Private to the codec module: little-endian integer and float stores/loads on
// raw bytes, independent of the host's byte order.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace frugal {

inline void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline void PutF32(uint8_t* p, float f) { PutU32(p, std::bit_cast<uint32_t>(f)); }
inline float GetF32(const uint8_t* p) { return std::bit_cast<float>(GetU32(p)); }

// Bulk copies of float arrays to and from little-endian bytes.
inline void PutF32Array(uint8_t* p, const float* v, size_t n) {
  if constexpr (std::endian::native == std::endian::little) {
    if (n) std::memcpy(p, v, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) PutF32(p + 4 * i, v[i]);
  }
}
inline void GetF32Array(const uint8_t* p, float* v, size_t n) {
  if constexpr (std::endian::native == std::endian::little) {
    if (n) std::memcpy(v, p, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) v[i] = GetF32(p + 4 * i);
  }
}

}  // namespace frugal
