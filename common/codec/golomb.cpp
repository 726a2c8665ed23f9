#include "frugal/codec/golomb.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace frugal {

int RiceParameterForDensity(double density) {
  if (!(density > 0.0)) return kMaxRiceParameter;
  if (density >= 1.0) return 0;
  const double golden = (1.0 + std::sqrt(5.0)) / 2.0;
  const double ratio = std::log(golden - 1.0) / std::log1p(-density);
  if (!(ratio > 0.0)) return 0;
  const double b = 1.0 + std::floor(std::log2(ratio));
  return static_cast<int>(std::clamp(b, 0.0, static_cast<double>(kMaxRiceParameter)));
}

uint64_t RiceCodeBits(std::span<const uint32_t> sorted, int b) {
  uint64_t bits = static_cast<uint64_t>(sorted.size()) * static_cast<uint64_t>(b + 1);
  uint32_t next = 0;  // smallest index the next entry may take
  for (uint32_t idx : sorted) {
    bits += (idx - next) >> b;
    next = idx + 1;
  }
  return bits;
}

int ChooseRiceParameter(std::span<const uint32_t> sorted, uint32_t dim) {
  if (sorted.empty() || dim == 0) return 0;
  const int guess = RiceParameterForDensity(static_cast<double>(sorted.size()) / dim);
  int best = guess;
  uint64_t best_bits = RiceCodeBits(sorted, guess);
  for (int b : {guess - 1, guess + 1}) {
    if (b < 0 || b > kMaxRiceParameter) continue;
    const uint64_t bits = RiceCodeBits(sorted, b);
    if (bits < best_bits) {
      best_bits = bits;
      best = b;
    }
  }
  return best;
}

void WriteRiceIndices(std::span<const uint32_t> sorted, int b, BitWriter& writer) {
  uint32_t next = 0;
  for (uint32_t idx : sorted) {
    const uint32_t gap = idx - next;
    writer.WriteUnary(gap >> b);
    if (b > 0) writer.Write(gap, b);
    next = idx + 1;
  }
}

Status ReadRiceIndices(BitReader& reader, uint32_t count, uint32_t dim, int b, std::vector<uint32_t>* out) {
  if (b < 0 || b > kMaxRiceParameter) {
    return InvalidArgumentError("Rice parameter " + std::to_string(b) + " outside [0, " +
                                std::to_string(kMaxRiceParameter) + "]");
  }
  if (count > dim) {
    return OutOfRangeError("index count " + std::to_string(count) + " exceeds dimension " + std::to_string(dim));
  }
  // Every code takes at least b + 1 bits: reject impossible counts before allocating.
  if (static_cast<uint64_t>(count) * static_cast<uint64_t>(b + 1) > reader.bits_left()) {
    return DataLossError("truncated index section: " + std::to_string(count) + " indices need at least " +
                         std::to_string(static_cast<uint64_t>(count) * (b + 1)) + " bits, " +
                         std::to_string(reader.bits_left()) + " present");
  }
  out->reserve(out->size() + count);
  const uint64_t max_quotient = static_cast<uint64_t>(dim) >> b;
  uint64_t next = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t q = 0;
    if (!reader.ReadUnary(max_quotient, &q)) {
      return DataLossError("index " + std::to_string(i) + ": quotient runs past the end of the section or past dimension " +
                           std::to_string(dim));
    }
    uint64_t r = 0;
    if (b > 0 && !reader.Read(b, &r)) {
      return DataLossError("index " + std::to_string(i) + ": remainder cut off at the end of the section");
    }
    const uint64_t idx = next + ((q << b) | r);
    if (idx >= dim) {
      return OutOfRangeError("index " + std::to_string(idx) + " at position " + std::to_string(i) +
                             " is >= dimension " + std::to_string(dim));
    }
    out->push_back(static_cast<uint32_t>(idx));
    next = idx + 1;
  }
  return OkStatus();
}

Status CheckSortedIndices(std::span<const uint32_t> sorted, uint32_t dim) {
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] >= dim) {
      return OutOfRangeError("index " + std::to_string(sorted[i]) + " is >= dimension " + std::to_string(dim));
    }
    if (i > 0 && sorted[i] <= sorted[i - 1]) {
      return InvalidArgumentError("indices not strictly increasing at position " + std::to_string(i));
    }
  }
  return OkStatus();
}

Result<std::vector<uint8_t>> EncodeRiceIndices(std::span<const uint32_t> sorted, uint32_t dim, int b) {
  if (b < 0 || b > kMaxRiceParameter) return InvalidArgumentError("Rice parameter " + std::to_string(b) + " out of range");
  FRUGAL_RETURN_IF_ERROR(CheckSortedIndices(sorted, dim));
  std::vector<uint8_t> out;
  BitWriter writer(&out);
  WriteRiceIndices(sorted, b, writer);
  writer.Finish();
  return out;
}

Result<std::vector<uint32_t>> DecodeRiceIndices(std::span<const uint8_t> bytes, uint32_t count, uint32_t dim, int b) {
  BitReader reader(bytes);
  std::vector<uint32_t> out;
  FRUGAL_RETURN_IF_ERROR(ReadRiceIndices(reader, count, dim, b, &out));
  const uint64_t used_bytes = (reader.position() + 7) / 8;
  if (used_bytes != bytes.size()) {
    return InvalidArgumentError("index section has " + std::to_string(bytes.size() - used_bytes) +
                                " unused trailing bytes");
  }
  uint64_t pad = 0;
  const int pad_bits = static_cast<int>(reader.bits_left());
  if (pad_bits > 0 && reader.Read(pad_bits, &pad) && pad != 0) {
    return InvalidArgumentError("non-zero padding bits after the last index");
  }
  return out;
}

double Log2Binomial(double n, double k) {
  if (k < 0 || k > n) return 0.0;
  return (std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0)) / std::log(2.0);
}

}  // namespace frugal
