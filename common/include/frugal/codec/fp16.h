// IEEE 754 binary16 conversion in portable integer code (no F16C needed), with
// round-to-nearest-even and directed variants used for quantization parameters
// that must bound a range.
#pragma once

#include <cstdint>

namespace frugal {

// Nearest-even conversion; overflow gives +-Inf, NaN stays NaN.
uint16_t FloatToHalf(float f);
// Exact widening conversion.
float HalfToFloat(uint16_t h);
// Largest finite half <= f (f finite and >= -65504), else the nearest-even result.
uint16_t FloatToHalfDown(float f);
// Smallest finite half >= f (f finite and <= 65504), else the nearest-even result.
uint16_t FloatToHalfUp(float f);
// True when the half is neither Inf nor NaN.
inline bool HalfIsFinite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }
inline constexpr float kHalfMax = 65504.0f;

}  // namespace frugal
