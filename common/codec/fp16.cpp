#include "frugal/codec/fp16.h"

#include <bit>

namespace frugal {
namespace {

uint16_t NextDown(uint16_t h) {
  if ((h & 0x7fff) == 0) return 0x8001;  // +-0 -> smallest negative subnormal
  return (h & 0x8000) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h - 1);
}
uint16_t NextUp(uint16_t h) {
  if ((h & 0x7fff) == 0) return 0x0001;
  return (h & 0x8000) ? static_cast<uint16_t>(h - 1) : static_cast<uint16_t>(h + 1);
}

}  // namespace

// After F. Giesen's float_to_half_fast3_rtne (public domain).
uint16_t FloatToHalf(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  if (x >= 0x47800000u) {  // >= 65536, Inf or NaN
    o = x > 0x7f800000u ? 0x7e00 : 0x7c00;
  } else if (x < 0x38800000u) {  // below 2^-14: subnormal half or zero
    // Adding 0.5 aligns the 10 mantissa bits at the bottom; the FPU rounds to nearest even.
    const float aligned = std::bit_cast<float>(x) + std::bit_cast<float>(126u << 23);
    o = static_cast<uint16_t>(std::bit_cast<uint32_t>(aligned) - (126u << 23));
  } else {
    const uint32_t mant_odd = (x >> 13) & 1;
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfff;
    x += mant_odd;
    o = static_cast<uint16_t>(x >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t FloatToHalfDown(float f) {
  uint16_t h = FloatToHalf(f);
  if (!(f >= -kHalfMax && f <= kHalfMax)) return h;
  if (HalfToFloat(h) > f) h = NextDown(h);
  return h;
}

uint16_t FloatToHalfUp(float f) {
  uint16_t h = FloatToHalf(f);
  if (!(f >= -kHalfMax && f <= kHalfMax)) return h;
  if (HalfToFloat(h) < f) h = NextUp(h);
  return h;
}

}  // namespace frugal
