#include "frugal/codec/adaptive_rice.h"

#include <algorithm>
#include <array>
#include <bit>
#include <string>

#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "range_coder.h"

namespace frugal {
namespace {

using range_coding::Prob;
using range_coding::RangeDecoder;
using range_coding::RangeEncoder;

// A quotient of kEscape or more is sent as kEscape ones and then q - kEscape + 1 in
// Elias gamma: long empty stretches cost O(log gap) decisions, not gap / 2^b.
constexpr uint64_t kEscape = 16;
// q < 2^28 (kMaxCodecDim), so q - kEscape + 1 has at most 28 bits: at most 27 length ones.
constexpr int kMaxGammaExtraBits = 27;

// Contexts of one index section, reset for every section.
struct GapModel {
  std::array<Prob, kEscape> quotient;  // decision j: "q > j"
  std::array<Prob, kMaxGammaExtraBits> gamma;  // decision i: "more than i extra length bits"
  // Remainder bit i (most significant first), split by whether q > 0 and whether every
  // higher remainder bit was 0: inside a dense run the high bits are learnt to be 0.
  std::array<Prob, 2 * 2 * (kMaxRiceParameter + 1)> remainder;

  Prob& Remainder(bool q_positive, bool zero_above, int bit) {
    return remainder[static_cast<size_t>((int{q_positive} * 2 + int{zero_above}) * (kMaxRiceParameter + 1) + bit)];
  }
};

void EncodeGap(RangeEncoder& rc, GapModel& m, uint64_t gap, int b) {
  const uint64_t q = gap >> b;
  const uint64_t ones = std::min(q, kEscape);
  for (uint64_t j = 0; j < ones; ++j) rc.Bit(m.quotient[j], 1);
  if (q < kEscape) {
    rc.Bit(m.quotient[q], 0);
  } else {
    const uint64_t v = q - kEscape + 1;
    const int extra = std::bit_width(v) - 1;  // <= kMaxGammaExtraBits
    for (int i = 0; i < extra; ++i) rc.Bit(m.gamma[static_cast<size_t>(i)], 1);
    if (extra < kMaxGammaExtraBits) rc.Bit(m.gamma[static_cast<size_t>(extra)], 0);
    rc.Direct(v, extra);
  }
  bool zero_above = true;
  for (int i = b - 1; i >= 0; --i) {
    const int bit = static_cast<int>((gap >> i) & 1);
    rc.Bit(m.Remainder(q > 0, zero_above, i), bit);
    if (bit) zero_above = false;
  }
}

uint64_t DecodeGap(RangeDecoder& rc, GapModel& m, int b) {
  uint64_t q = 0;
  while (q < kEscape && rc.Bit(m.quotient[q])) ++q;
  if (q == kEscape) {
    int extra = 0;
    while (extra < kMaxGammaExtraBits && rc.Bit(m.gamma[static_cast<size_t>(extra)])) ++extra;
    const uint64_t v = (uint64_t{1} << extra) | rc.Direct(extra);
    q = kEscape + v - 1;
  }
  uint64_t r = 0;
  bool zero_above = true;
  for (int i = b - 1; i >= 0; --i) {
    const int bit = rc.Bit(m.Remainder(q > 0, zero_above, i));
    r = (r << 1) | static_cast<uint64_t>(bit);
    if (bit) zero_above = false;
  }
  return (q << b) | r;  // q < 2^29 and b <= 30: no overflow
}

Status CheckParameters(uint32_t count, uint32_t dim, int b) {
  if (b < 0 || b > kMaxRiceParameter) {
    return InvalidArgumentError("Rice parameter " + std::to_string(b) + " outside [0, " +
                                std::to_string(kMaxRiceParameter) + "]");
  }
  if (dim > kMaxCodecDim) {
    return ResourceExhaustedError("dimension " + std::to_string(dim) + " exceeds the limit of " +
                                  std::to_string(kMaxCodecDim));
  }
  if (count > dim) {
    return OutOfRangeError("index count " + std::to_string(count) + " exceeds dimension " + std::to_string(dim));
  }
  return OkStatus();
}

}  // namespace

Result<std::vector<uint8_t>> EncodeAdaptiveRiceIndices(std::span<const uint32_t> sorted, uint32_t dim, int b) {
  FRUGAL_RETURN_IF_ERROR(CheckParameters(static_cast<uint32_t>(std::min<size_t>(sorted.size(), UINT32_MAX)), dim, b));
  FRUGAL_RETURN_IF_ERROR(CheckSortedIndices(sorted, dim));
  std::vector<uint8_t> out;
  out.reserve(sorted.size() + 8);
  RangeEncoder rc(&out);
  GapModel model;
  uint32_t next = 0;
  for (uint32_t idx : sorted) {
    EncodeGap(rc, model, idx - next, b);
    next = idx + 1;
  }
  rc.Finish();
  return out;
}

Result<std::vector<uint32_t>> DecodeAdaptiveRiceIndices(std::span<const uint8_t> bytes, uint32_t count,
                                                        uint32_t dim, int b) {
  FRUGAL_RETURN_IF_ERROR(CheckParameters(count, dim, b));
  if (!bytes.empty() && bytes.back() == 0) {
    return InvalidArgumentError("adaptive index section ends in a zero byte (the encoder drops those)");
  }
  RangeDecoder rc(bytes);
  GapModel model;
  std::vector<uint32_t> out;
  out.reserve(count);
  uint64_t next = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t idx = next + DecodeGap(rc, model, b);
    if (idx >= dim) {
      return OutOfRangeError("index " + std::to_string(idx) + " at position " + std::to_string(i) +
                             " is >= dimension " + std::to_string(dim));
    }
    out.push_back(static_cast<uint32_t>(idx));
    next = idx + 1;
  }
  if (!rc.consistent()) return DataLossError("adaptive index section is corrupt (code outside its range)");
  // The one byte string for these indices is what the encoder writes: anything else
  // (extra bytes, another valid termination) is refused, so accepted input is canonical.
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> again, EncodeAdaptiveRiceIndices(out, dim, b));
  if (!std::equal(again.begin(), again.end(), bytes.begin(), bytes.end())) {
    return InvalidArgumentError("adaptive index section of " + std::to_string(bytes.size()) +
                                " bytes is not the encoding of the " + std::to_string(count) +
                                " indices it decodes to (" + std::to_string(again.size()) + " bytes)");
  }
  return out;
}

Result<IndexSection> EncodeIndexSection(std::span<const uint32_t> sorted, uint32_t dim) {
  IndexSection s;
  s.rice_parameter = ChooseRiceParameter(sorted, dim);
  FRUGAL_ASSIGN_OR_RETURN(s.bytes, EncodeAdaptiveRiceIndices(sorted, dim, s.rice_parameter));
  if (s.bytes.size() < (RiceCodeBits(sorted, s.rice_parameter) + 7) / 8) {
    s.adaptive = true;
    return s;
  }
  FRUGAL_ASSIGN_OR_RETURN(s.bytes, EncodeRiceIndices(sorted, dim, s.rice_parameter));
  return s;
}

Result<std::vector<uint32_t>> DecodeIndexSection(std::span<const uint8_t> bytes, uint32_t count, uint32_t dim,
                                                 int b, bool adaptive) {
  if (!adaptive) return DecodeRiceIndices(bytes, count, dim, b);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<uint32_t> indices, DecodeAdaptiveRiceIndices(bytes, count, dim, b));
  const uint64_t rice_bytes = (RiceCodeBits(indices, b) + 7) / 8;
  if (bytes.size() >= rice_bytes) {
    return InvalidArgumentError("adaptive Rice section of " + std::to_string(bytes.size()) +
                                " bytes is not shorter than plain Rice (" + std::to_string(rice_bytes) + " bytes)");
  }
  return indices;
}

}  // namespace frugal
