#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::Gaussian;

bool BitEqual(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

// Per-block (offset, scale) read straight from the wire layout of docs/codecs.md.
struct BlockParam {
  float offset, scale;
};
std::vector<BlockParam> ReadParams(const std::vector<uint8_t>& p) {
  const uint8_t* body = p.data() + kFrameHeaderSize;
  uint32_t nblocks = 0;
  std::memcpy(&nblocks, p.data() + 12, 4);
  REQUIRE(body[1] == 0);  // fp16 parameters
  std::vector<BlockParam> out(nblocks);
  for (uint32_t b = 0; b < nblocks; ++b) {
    uint16_t o, s;
    std::memcpy(&o, body + 10 + 4 * b, 2);
    std::memcpy(&s, body + 10 + 4 * b + 2, 2);
    out[b] = {HalfToFloat(o), HalfToFloat(s)};
  }
  return out;
}

TEST_SUITE("codec") {
  TEST_CASE("the lossless fp32 downlink round-trips bit-exactly and ignores the base") {
    const std::vector<float> w = Gaussian(7777, 1, 0.1);
    const std::vector<float> base = Gaussian(7777, 2, 0.1);
    DownlinkConfig cfg;
    cfg.bits = 0;
    auto enc = EncodeDownlink(w, base, cfg);
    REQUIRE(enc.ok());
    CHECK(enc->bytes.size() == kFrameHeaderSize + 4 * w.size());
    CHECK(BitEqual(enc->reconstruction, w));
    auto dec = DecodeDownlink(enc->bytes, {}, 7777);
    REQUIRE(dec.ok());
    CHECK(BitEqual(*dec, w));
  }

  TEST_CASE("deterministic rounding keeps every element within half a scale step and decodes bit-exactly") {
    std::vector<float> w = Gaussian(10000, 3, 0.05);
    w[17] = 3.0f;  // an outlier widens its block only
    for (int bits : {8, 4, 2}) {
      for (uint32_t block : {256u, 64u, 1000u, 1u}) {
        DownlinkConfig cfg;
        cfg.bits = bits;
        cfg.block_size = block;
        auto enc = EncodeDownlink(w, {}, cfg);
        REQUIRE(enc.ok());
        auto dec = DecodeDownlink(enc->bytes, {}, 10000);
        REQUIRE(dec.ok());
        CHECK(BitEqual(*dec, enc->reconstruction));
        const std::vector<BlockParam> params = ReadParams(enc->bytes);
        REQUIRE(params.size() == (10000 + block - 1) / block);
        int violations = 0;
        for (size_t i = 0; i < w.size(); ++i) {
          const float s = params[i / block].scale;
          const float err = std::fabs((*dec)[i] - w[i]);
          // Half a step, plus float rounding of o + q*s (a few ulp of the values involved).
          if (err > 0.5f * s + 4e-7f * (std::fabs(w[i]) + std::fabs(params[i / block].offset))) ++violations;
        }
        INFO("bits " << bits << " block " << block);
        CHECK(violations == 0);
      }
    }
  }

  TEST_CASE("stochastic rounding stays within one step and is unbiased") {
    const std::vector<float> w = Gaussian(4096, 4, 0.05);
    std::vector<double> mean(w.size(), 0.0);
    const int trials = 400;
    for (int t = 0; t < trials; ++t) {
      DownlinkConfig cfg;
      cfg.bits = 2;
      cfg.stochastic = true;
      cfg.seed = static_cast<uint64_t>(t);
      auto enc = EncodeDownlink(w, {}, cfg);
      REQUIRE(enc.ok());
      const std::vector<BlockParam> params = ReadParams(enc->bytes);
      auto dec = DecodeDownlink(enc->bytes, {}, 4096);
      REQUIRE(dec.ok());
      CHECK(BitEqual(*dec, enc->reconstruction));
      for (size_t i = 0; i < w.size(); ++i) {
        CHECK(std::fabs((*dec)[i] - w[i]) <= params[i / 256].scale * (1.0f + 1e-6f));
        mean[i] += (*dec)[i];
      }
    }
    double bias = 0.0, det_err = 0.0;
    DownlinkConfig det;
    det.bits = 2;
    const std::vector<float> rd = EncodeDownlink(w, {}, det)->reconstruction;
    for (size_t i = 0; i < w.size(); ++i) {
      bias += mean[i] / trials - w[i];
      det_err += std::fabs(rd[i] - w[i]);
    }
    // The average of the stochastic reconstructions is far closer than one deterministic one.
    CHECK(std::fabs(bias) / w.size() < 0.02 * det_err / w.size());
  }

  TEST_CASE("quantized downlink sizes include every scale and offset and meet 3.9x at 8 bits, 7.5x at 4 bits") {
    const std::vector<float> w = Gaussian(199210, 5, 0.05);
    struct Case {
      int bits;
      double target;
    };
    for (const Case c : {Case{8, 3.9}, Case{4, 7.5}, Case{2, 14.0}}) {
      DownlinkConfig cfg;
      cfg.bits = c.bits;
      auto enc = EncodeDownlink(w, {}, cfg);
      REQUIRE(enc.ok());
      const size_t blocks = (199210 + 255) / 256;
      CHECK(enc->bytes.size() == kFrameHeaderSize + 10 + 4 * blocks + (199210 * static_cast<size_t>(c.bits) + 7) / 8);
      const double ratio = 4.0 * 199210 / static_cast<double>(enc->bytes.size());
      INFO("bits " << c.bits << " ratio " << ratio);
      CHECK(ratio >= c.target);
    }
  }

  TEST_CASE("delta downlink keeps client and server copies bit-identical over 50 versions") {
    const size_t d = 30000;
    std::vector<float> global = Gaussian(d, 6, 0.05);
    DownlinkConfig cfg;
    cfg.bits = 4;
    // A client that holds nothing gets the full model.
    auto first = EncodeDownlink(global, {}, cfg);
    REQUIRE(first.ok());
    CHECK(!InspectDownlink(first->bytes, d)->delta);
    std::vector<float> server_view = first->reconstruction;
    auto client = DecodeDownlink(first->bytes, {}, d);
    REQUIRE(client.ok());
    std::vector<float> client_copy = *client;
    for (int version = 1; version <= 50; ++version) {
      const std::vector<float> step = Gaussian(d, 1000 + version, 0.001);
      for (size_t i = 0; i < d; ++i) global[i] += step[i];
      cfg.stochastic = version % 2 == 0;
      cfg.seed = static_cast<uint64_t>(version);
      auto enc = EncodeDownlink(global, server_view, cfg);
      REQUIRE(enc.ok());
      CHECK(InspectDownlink(enc->bytes, d)->delta);
      auto dec = DecodeDownlink(enc->bytes, client_copy, d);
      REQUIRE(dec.ok());
      client_copy = std::move(dec).value();
      server_view = enc->reconstruction;
      REQUIRE(BitEqual(client_copy, server_view));
    }
    // Errors do not accumulate: each delta is taken against what the client really holds.
    double worst = 0.0;
    for (size_t i = 0; i < d; ++i) worst = std::max(worst, static_cast<double>(std::fabs(client_copy[i] - global[i])));
    CHECK(worst < 0.002);
  }

  TEST_CASE("the downlink decoder rejects malformed payloads and the wrong base with a message naming the defect") {
    const std::vector<float> base = Gaussian(1000, 7, 0.05);
    std::vector<float> target = base;
    for (float& x : target) x += 0.01f;
    DownlinkConfig cfg;
    auto enc = EncodeDownlink(target, base, cfg);
    REQUIRE(enc.ok());
    const std::vector<uint8_t> good = enc->bytes;
    REQUIRE(DecodeDownlink(good, base, 1000).ok());

    for (size_t n : {size_t{0}, size_t{5}, kFrameHeaderSize, good.size() - 1}) {
      CHECK(Contains(ErrorMessage(DecodeDownlink(std::span(good).first(n), base, 1000)), "truncated"));
    }
    std::vector<uint8_t> p = good;
    p[p.size() - 10] ^= 4;
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "checksum mismatch"));
    p = good;
    p[3] = 0;
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "bad magic"));
    p = good;
    p[5] = 0;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "unsupported codec version 0"));
    CHECK(Contains(ErrorMessage(DecodeDownlink(good, base, 2000)), "dimension mismatch: payload declares 1000, expected 2000"));
    p = good;
    p[4] = 1;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "not a downlink codec"));

    // The base the client holds is not the one the sender assumed.
    std::vector<float> other = base;
    other[500] += 1e-3f;
    CHECK(Contains(ErrorMessage(DecodeDownlink(good, other, 1000)), "base checksum mismatch"));
    CHECK(Contains(ErrorMessage(DecodeDownlink(good, {}, 1000)), "caller holds 0 values"));

    // Block count larger than the dimension allows (count > what dim implies).
    p = good;
    codec_test::PutU32At(p, 12, 5000);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "block count 5000 does not match"));
    // Declared sizes that do not fit the body, or are over the limits.
    p = good;
    codec_test::PutU32At(p, 8, 1001);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1001)), "need"));
    p = good;
    codec_test::PutU32At(p, kFrameHeaderSize + 2, 0x7fffffff);  // block size
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "block size 2147483647 outside"));
    p = good;
    codec_test::PutU32At(p, 16, 0x90000000u);
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "exceeds the limit"));
    p = good;
    p[kFrameHeaderSize] = 3;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "unsupported bit width 3"));
    // NaN / Inf block parameters.
    p = good;
    p[kFrameHeaderSize + 10 + 2] = 0x00;
    p[kFrameHeaderSize + 10 + 3] = 0x7e;  // scale of block 0 = NaN
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "block 0: offset or scale is NaN/Inf"));
    p = good;
    p[kFrameHeaderSize + 10 + 4 + 3] = 0xbc;  // scale of block 1 = -1
    p[kFrameHeaderSize + 10 + 4 + 2] = 0x00;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, base, 1000)), "block 1: negative scale"));

    // NaN inside a lossless payload.
    cfg.bits = 0;
    auto lossless = EncodeDownlink(target, {}, cfg);
    REQUIRE(lossless.ok());
    p = lossless->bytes;
    codec_test::PutU32At(p, kFrameHeaderSize + 4 * 321, 0x7fc00001u);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, {}, 1000)), "index 321 is NaN"));
    codec_test::PutU32At(p, kFrameHeaderSize + 4 * 321, 0x7f800000u);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeDownlink(p, {}, 1000)), "index 321 is Inf"));
  }

  TEST_CASE("the downlink encoder rejects non-finite models, mismatched bases and bad settings") {
    std::vector<float> w = Gaussian(100, 8);
    w[3] = NAN;
    CHECK(Contains(ErrorMessage(EncodeDownlink(w, {}, {})), "target value at index 3 is NaN"));
    w[3] = 0.0f;
    CHECK(Contains(ErrorMessage(EncodeDownlink(w, Gaussian(99, 1), {})), "base has 99 values"));
    DownlinkConfig cfg;
    cfg.bits = 3;
    CHECK(Contains(ErrorMessage(EncodeDownlink(w, {}, cfg)), "unsupported bit width 3"));
    cfg.bits = 8;
    cfg.block_size = 0;
    CHECK(Contains(ErrorMessage(EncodeDownlink(w, {}, cfg)), "block size 0"));
  }

  TEST_CASE("values beyond the fp16 range fall back to fp32 block parameters and still meet the bound") {
    std::vector<float> w = Gaussian(3000, 9, 1e5);
    DownlinkConfig cfg;
    auto enc = EncodeDownlink(w, {}, cfg);
    REQUIRE(enc.ok());
    CHECK(InspectDownlink(enc->bytes, 3000)->fp32_params);
    auto dec = DecodeDownlink(enc->bytes, {}, 3000);
    REQUIRE(dec.ok());
    CHECK(BitEqual(*dec, enc->reconstruction));
    for (size_t b = 0; b * 256 < w.size(); ++b) {
      float mn = INFINITY, mx = -INFINITY;
      for (size_t i = b * 256; i < std::min<size_t>(w.size(), (b + 1) * 256); ++i) {
        mn = std::min(mn, w[i]);
        mx = std::max(mx, w[i]);
      }
      const float step = (mx - mn) / 255.0f;
      for (size_t i = b * 256; i < std::min<size_t>(w.size(), (b + 1) * 256); ++i) {
        CHECK(std::fabs((*dec)[i] - w[i]) <= 0.5f * step * 1.0001f + 1e-7f * std::fabs(w[i]));
      }
    }
  }
}

}  // namespace
}  // namespace frugal
