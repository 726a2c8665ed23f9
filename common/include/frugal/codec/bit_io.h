// Little-endian, least-significant-bit-first bit writer and bounds-checked bit
// reader used by the entropy coders. The reader never reads past its span.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace frugal {

// Appends bits to a byte vector. Not thread-safe.
class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>* out) : out_(out) {}

  // Writes the low `n` bits of `v` (n <= 32).
  void Write(uint64_t v, int n) {
    acc_ |= (v & ((uint64_t{1} << n) - 1)) << nbits_;
    nbits_ += n;
    if (nbits_ >= 32) FlushWord();
  }
  // Writes `count` zero bits then a one bit.
  void WriteUnary(uint64_t count) {
    while (count >= 32) {
      nbits_ += 32;
      FlushWord();
      count -= 32;
    }
    nbits_ += static_cast<int>(count);
    if (nbits_ >= 32) FlushWord();
    Write(1, 1);
  }
  // Pads with zero bits to a byte boundary and writes out everything pending.
  void Finish() {
    while (nbits_ > 0) {
      out_->push_back(static_cast<uint8_t>(acc_));
      acc_ >>= 8;
      nbits_ = nbits_ > 8 ? nbits_ - 8 : 0;
    }
    acc_ = 0;
  }
  // Bits written so far (including pending ones).
  uint64_t bits_written() const { return bits_flushed_ + static_cast<uint64_t>(nbits_); }

 private:
  void FlushWord() {
    const uint32_t w = static_cast<uint32_t>(acc_);
    const uint8_t b[4] = {static_cast<uint8_t>(w), static_cast<uint8_t>(w >> 8),
                          static_cast<uint8_t>(w >> 16), static_cast<uint8_t>(w >> 24)};
    out_->insert(out_->end(), b, b + 4);
    acc_ >>= 32;
    nbits_ -= 32;
    bits_flushed_ += 32;
  }

  std::vector<uint8_t>* out_;
  uint64_t acc_ = 0;
  int nbits_ = 0;
  uint64_t bits_flushed_ = 0;
};

// Reads bits from a span; every read reports failure instead of running past the end.
class BitReader {
 public:
  explicit BitReader(std::span<const uint8_t> bytes) : data_(bytes), size_bits_(bytes.size() * 8) {}

  uint64_t position() const { return pos_; }
  uint64_t bits_left() const { return size_bits_ - pos_; }

  // Reads `n` bits (n <= 32) into *v; false (nothing consumed) if fewer remain.
  bool Read(int n, uint64_t* v) {
    if (static_cast<uint64_t>(n) > bits_left()) return false;
    *v = Peek() & ((uint64_t{1} << n) - 1);
    pos_ += static_cast<uint64_t>(n);
    return true;
  }
  // Counts zero bits up to the next one bit and consumes both; false if the
  // count would exceed `max_count` or the terminating one bit is missing.
  bool ReadUnary(uint64_t max_count, uint64_t* count) {
    uint64_t c = 0;
    for (;;) {
      const uint64_t left = bits_left();
      if (left == 0) return false;
      const int valid = left < 57 ? static_cast<int>(left) : 57;
      const uint64_t w = Peek() & ((uint64_t{1} << valid) - 1);
      if (w != 0) {
        const int tz = std::countr_zero(w);
        c += static_cast<uint64_t>(tz);
        if (c > max_count) return false;
        pos_ += static_cast<uint64_t>(tz) + 1;
        *count = c;
        return true;
      }
      c += static_cast<uint64_t>(valid);
      pos_ += static_cast<uint64_t>(valid);
      if (c > max_count) return false;
    }
  }

 private:
  // The next 64 bits starting at pos_ (at least 57 meaningful), zero past the end.
  uint64_t Peek() const {
    const size_t byte = static_cast<size_t>(pos_ >> 3);
    uint64_t w = 0;
    if (byte + 8 <= data_.size()) {
      std::memcpy(&w, data_.data() + byte, 8);
      if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    } else {
      for (size_t i = byte; i < data_.size(); ++i) w |= uint64_t{data_[i]} << (8 * (i - byte));
    }
    return w >> (pos_ & 7);
  }

  std::span<const uint8_t> data_;
  uint64_t size_bits_;
  uint64_t pos_ = 0;
};

}  // namespace frugal
