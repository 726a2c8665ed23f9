#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/bit_io.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;

std::vector<uint8_t> SampleFrame() {
  FrameHeader h;
  h.codec = CodecId::kDownlinkFp32;
  h.flags = 0;
  h.dim = 3;
  h.count = 3;
  const std::vector<uint8_t> body = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<uint8_t> out;
  REQUIRE(AppendFrame(h, body, &out).ok());
  return out;
}

TEST_SUITE("codec") {
  TEST_CASE("a frame header is 24 little-endian bytes and parses back to the same fields") {
    const std::vector<uint8_t> p = SampleFrame();
    REQUIRE(p.size() == kFrameHeaderSize + 12);
    CHECK(std::memcmp(p.data(), "FRUG", 4) == 0);
    CHECK(p[4] == 4);
    CHECK(p[5] == kFrameVersion);
    CHECK(p[8] == 3);
    CHECK(p[16] == 12);
    auto f = ParseFrame(p);
    REQUIRE(f.ok());
    CHECK(f->header.codec == CodecId::kDownlinkFp32);
    CHECK(f->header.dim == 3);
    CHECK(f->header.count == 3);
    CHECK(f->body.size() == 12);
    CHECK(f->body[0] == 1);
  }

  TEST_CASE("frame parsing names truncation, trailing bytes, magic, version, checksum and oversize") {
    const std::vector<uint8_t> good = SampleFrame();
    CHECK(Contains(ErrorMessage(ParseFrame(std::span(good).first(10))), "truncated payload"));
    CHECK(Contains(ErrorMessage(ParseFrame(std::span(good).first(good.size() - 1))), "truncated payload"));
    std::vector<uint8_t> p = good;
    p.push_back(0);
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "trailing bytes"));
    p = good;
    p[0] = 'X';
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "bad magic"));
    p = good;
    p[5] = 9;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "unsupported codec version 9"));
    p = good;
    p[kFrameHeaderSize + 3] ^= 0x40;
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "checksum mismatch"));
    REQUIRE(SealFrame(p).ok());
    CHECK(ParseFrame(p).ok());
    p = good;
    codec_test::PutU32At(p, 16, 0xFFFFFFF0u);
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "exceeds the limit"));
    p = good;
    codec_test::PutU32At(p, 8, kMaxCodecDim + 1);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(ParseFrame(p)), "declared dimension"));
  }

  TEST_CASE("fp16 conversion rounds to nearest even and directed variants bound the input") {
    CHECK(FloatToHalf(1.0f) == 0x3c00);
    CHECK(FloatToHalf(-2.0f) == 0xc000);
    CHECK(FloatToHalf(65504.0f) == 0x7bff);
    CHECK(FloatToHalf(1e6f) == 0x7c00);
    CHECK(FloatToHalf(0x1p-24f) == 0x0001);
    CHECK(FloatToHalf(1.0f + 0x1p-11f) == 0x3c00);  // tie goes to even
    CHECK(FloatToHalf(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(!HalfIsFinite(FloatToHalf(NAN)));
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const auto half = static_cast<uint16_t>(h);
      if (!HalfIsFinite(half)) continue;
      const float f = HalfToFloat(half);
      CHECK(FloatToHalf(f) == half);
    }
    Rng rng(3);
    for (int i = 0; i < 20000; ++i) {
      const float x = static_cast<float>((rng.Uniform() - 0.5) * std::ldexp(1.0, static_cast<int>(rng.UniformInt(40)) - 24));
      const float lo = HalfToFloat(FloatToHalfDown(x));
      const float hi = HalfToFloat(FloatToHalfUp(x));
      CHECK(lo <= x);
      CHECK(hi >= x);
      const float nearest = HalfToFloat(FloatToHalf(x));
      CHECK((nearest == lo || nearest == hi));
    }
  }

  TEST_CASE("bits written are read back, and the reader refuses to run past its end") {
    std::vector<uint8_t> buf;
    BitWriter w(&buf);
    Rng rng(5);
    std::vector<std::pair<uint64_t, int>> items;
    for (int i = 0; i < 5000; ++i) {
      const int n = 1 + static_cast<int>(rng.UniformInt(32));
      const uint64_t v = rng.NextU64() & ((uint64_t{1} << n) - 1);
      items.emplace_back(v, n);
      w.Write(v, n);
      const uint64_t u = rng.UniformInt(100);
      items.emplace_back(u, -1);
      w.WriteUnary(u);
    }
    const uint64_t written = w.bits_written();
    w.Finish();
    CHECK(buf.size() == (written + 7) / 8);
    BitReader r(buf);
    for (auto [v, n] : items) {
      uint64_t got = 0;
      if (n < 0) {
        REQUIRE(r.ReadUnary(1000, &got));
      } else {
        REQUIRE(r.Read(n, &got));
      }
      CHECK(got == v);
    }
    CHECK(r.bits_left() < 8);
    uint64_t x = 0;
    CHECK(!r.Read(9, &x));
    const std::vector<uint8_t> zeros(3, 0);
    BitReader z(zeros);
    CHECK(!z.ReadUnary(1000, &x));
    const std::vector<uint8_t> one = {0x00, 0x01};
    BitReader limited(one);
    CHECK(!limited.ReadUnary(5, &x));  // 8 zeros exceed the limit of 5
  }
}

}  // namespace
}  // namespace frugal
