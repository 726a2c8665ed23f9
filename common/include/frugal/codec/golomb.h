// Golomb-Rice coding of sorted sparse indices as gaps, with the parameter set
// by the density (Sattler et al. 2019, STC) and refined on the actual gaps,
// plus the entropy bound log2 C(d, k) it is measured against.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "frugal/codec/bit_io.h"
#include "frugal/core/status.h"

namespace frugal {

inline constexpr int kMaxRiceParameter = 30;

// STC's b* = 1 + floor(log2(ln(phi - 1) / ln(1 - p))), clamped to [0, kMaxRiceParameter].
int RiceParameterForDensity(double density);
// Exact bit cost of coding `sorted` (strictly increasing) with parameter b.
uint64_t RiceCodeBits(std::span<const uint32_t> sorted, int b);
// b* for k/dim, or a neighbour of it (b* - 1, b* + 1) when that codes these gaps in fewer bits.
int ChooseRiceParameter(std::span<const uint32_t> sorted, uint32_t dim);
// Writes each gap minus one (the first index as is): unary quotient, then b remainder bits.
// `sorted` must be strictly increasing (checked by callers).
void WriteRiceIndices(std::span<const uint32_t> sorted, int b, BitWriter& writer);
// Reads `count` indices; fails with an Error (nothing past the reader's span is read) if a
// code is cut off, an index reaches `dim`, or count > dim. Appends to *out.
Status ReadRiceIndices(BitReader& reader, uint32_t count, uint32_t dim, int b, std::vector<uint32_t>* out);

// Standalone byte forms of the two above (bytes padded with zero bits to a byte).
Result<std::vector<uint8_t>> EncodeRiceIndices(std::span<const uint32_t> sorted, uint32_t dim, int b);
// Also rejects non-zero padding bits and bytes left over after `count` indices.
Result<std::vector<uint32_t>> DecodeRiceIndices(std::span<const uint8_t> bytes, uint32_t count, uint32_t dim, int b);

// OkStatus if `sorted` is strictly increasing and every index is below `dim`;
// otherwise kOutOfRange or kInvalidArgument naming the first offending position.
// Every index encoder checks its input with it.
Status CheckSortedIndices(std::span<const uint32_t> sorted, uint32_t dim);

// log2 of the binomial coefficient C(n, k), via lgamma in double.
double Log2Binomial(double n, double k);

}  // namespace frugal
