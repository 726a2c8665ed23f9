// Private to the codec module: the adaptive binary range coder (LZMA style)
// that the adaptive Rice index sections and the merged broadcast chains share,
// with its two-speed probability model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal::range_coding {

// Probabilities of a 0 in 15 bits. Each context mixes a fast estimate (about 16
// decisions of memory, follows a layer boundary) with a slow one (about 128, costs
// little on a stationary stretch); both stay inside (0, 1) by construction.
constexpr int kProbBits = 15;
constexpr uint32_t kProbOne = 1u << kProbBits;
constexpr int kFastShift = 4;
constexpr int kSlowShift = 7;
constexpr uint32_t kTop = 1u << 24;  // the range is renormalized to at least 2^24

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

}  // namespace frugal::range_coding
