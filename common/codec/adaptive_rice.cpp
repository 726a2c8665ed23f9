#include "frugal/codec/adaptive_rice.h"

#include <algorithm>
#include <array>
#include <bit>
#include <string>

#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"

namespace frugal {
namespace {

// Probabilities of a 0 in 15 bits. Each context mixes a fast estimate (about 16
// decisions of memory, follows a layer boundary) with a slow one (about 128, costs
// little on a stationary stretch); both stay inside (0, 1) by construction.
constexpr int kProbBits = 15;
constexpr uint32_t kProbOne = 1u << kProbBits;
constexpr int kFastShift = 4;
constexpr int kSlowShift = 7;
constexpr uint32_t kTop = 1u << 24;  // the range is renormalized to at least 2^24

// A quotient of kEscape or more is sent as kEscape ones and then q - kEscape + 1 in
// Elias gamma: long empty stretches cost O(log gap) decisions, not gap / 2^b.
constexpr uint64_t kEscape = 16;
// q < 2^28 (kMaxCodecDim), so q - kEscape + 1 has at most 28 bits: at most 27 length ones.
constexpr int kMaxGammaExtraBits = 27;

struct Prob {
  uint16_t fast = kProbOne / 2;
  uint16_t slow = kProbOne / 2;

  uint32_t Zero() const { return (uint32_t{fast} + uint32_t{slow}) >> 1; }
  void Update(int bit) {
    if (bit) {
      fast = static_cast<uint16_t>(fast - (fast >> kFastShift));
      slow = static_cast<uint16_t>(slow - (slow >> kSlowShift));
    } else {
      fast = static_cast<uint16_t>(fast + ((kProbOne - fast) >> kFastShift));
      slow = static_cast<uint16_t>(slow + ((kProbOne - slow) >> kSlowShift));
    }
  }
};

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

// LZMA-style binary range encoder (carry propagation through a cached byte). The
// first byte such a coder emits is always 0 and is not written; Finish ends on the
// shortest value inside the final interval and drops trailing zero bytes, which the
// decoder reads back as the zeros past the end of its input.
class RangeEncoder {
 public:
  explicit RangeEncoder(std::vector<uint8_t>* out) : out_(out), start_(out->size()) {}

  void Bit(Prob& p, int bit) {
    const uint32_t bound = (range_ >> kProbBits) * p.Zero();
    if (bit) {
      low_ += bound;
      range_ -= bound;
    } else {
      range_ = bound;
    }
    p.Update(bit);
    Normalize();
  }
  // The low `n` bits of v, most significant first, each at probability 1/2.
  void Direct(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) {
      range_ >>= 1;
      if ((v >> i) & 1) low_ += range_;
      Normalize();
    }
  }
  void Finish() {
    for (int s = 32; s >= 0; --s) {
      const uint64_t mask = (uint64_t{1} << s) - 1;
      const uint64_t v = (low_ + mask) & ~mask;
      if (v - low_ < range_) {
        low_ = v;
        break;
      }
    }
    for (int i = 0; i < 5; ++i) ShiftLow();
    while (out_->size() > start_ && out_->back() == 0) out_->pop_back();
  }

 private:
  void Normalize() {
    while (range_ < kTop) {
      range_ <<= 8;
      ShiftLow();
    }
  }
  void ShiftLow() {
    if (static_cast<uint32_t>(low_) < 0xFF000000u || (low_ >> 32) != 0) {
      const auto carry = static_cast<uint8_t>(low_ >> 32);
      uint8_t byte = cache_;
      do {
        Emit(static_cast<uint8_t>(byte + carry));
        byte = 0xFF;
      } while (--pending_ != 0);
      cache_ = static_cast<uint8_t>(low_ >> 24);
    }
    ++pending_;
    low_ = (low_ & 0x00FFFFFFu) << 8;
  }
  void Emit(uint8_t byte) {
    if (skip_first_) {
      skip_first_ = false;  // the integer part of a value in [0, 1): always 0
      return;
    }
    out_->push_back(byte);
  }

  std::vector<uint8_t>* out_;
  size_t start_;
  uint64_t low_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
  uint8_t cache_ = 0;
  uint64_t pending_ = 1;
  bool skip_first_ = true;
};

// Mirror of RangeEncoder. Reads zeros past the end of its input and never reads
// outside it; on bytes no encoder wrote it still terminates (every call does bounded
// work) and the caller's re-encoding check refuses the result.
class RangeDecoder {
 public:
  explicit RangeDecoder(std::span<const uint8_t> in) : in_(in) {
    for (int i = 0; i < 4; ++i) code_ = (code_ << 8) | Next();
  }

  int Bit(Prob& p) {
    const uint32_t bound = (range_ >> kProbBits) * p.Zero();
    int bit = 0;
    if (code_ < bound) {
      range_ = bound;
    } else {
      code_ -= bound;
      range_ -= bound;
      bit = 1;
    }
    p.Update(bit);
    Normalize();
    return bit;
  }
  uint64_t Direct(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) {
      range_ >>= 1;
      int bit = 0;
      if (code_ >= range_) {
        code_ -= range_;
        bit = 1;
      }
      v = (v << 1) | static_cast<uint64_t>(bit);
      Normalize();
    }
    return v;
  }
  // A stream an encoder wrote keeps code < range throughout.
  bool consistent() const { return code_ < range_; }

 private:
  void Normalize() {
    while (range_ < kTop) {
      range_ <<= 8;
      code_ = (code_ << 8) | Next();
    }
  }
  uint32_t Next() { return pos_ < in_.size() ? in_[pos_++] : 0u; }

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  uint32_t code_ = 0;
  uint32_t range_ = 0xFFFFFFFFu;
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
