#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/fp16.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/topk.h"
#include "frugal/codec/uplink.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::Gaussian;

std::vector<uint8_t> Encode(const std::vector<float>& u, const UplinkConfig& cfg) {
  std::vector<float> residual;
  auto r = EncodeUplink(u, cfg, residual);
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Encodes a small fixed sparse update with fp32 values, for tampering tests.
std::vector<uint8_t> SmallSparse(ValueCoding coding = ValueCoding::kFp32) {
  SparseUpdate s;
  s.dim = 1000;
  s.indices = {2, 40, 41, 500, 999};
  s.values = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f};
  auto r = EncodeSparseUpdate(s, coding);
  REQUIRE(r.ok());
  return std::move(r).value();
}

TEST_SUITE("codec") {
  TEST_CASE("the dense fp32 uplink is header plus 4*d bytes and round-trips bit-exactly") {
    const std::vector<float> u = Gaussian(12345, 1);
    UplinkConfig cfg;
    cfg.dense = true;
    const std::vector<uint8_t> p = Encode(u, cfg);
    CHECK(p.size() == kFrameHeaderSize + 4 * u.size());
    auto s = DecodeUplink(p, 12345);
    REQUIRE(s.ok());
    REQUIRE(s->values.size() == u.size());
    CHECK(std::memcmp(s->values.data(), u.data(), 4 * u.size()) == 0);
    CHECK(s->indices.front() == 0);
    CHECK(s->indices.back() == 12344);
  }

  TEST_CASE("sparse fp32 values round-trip bit-exactly and the indices are the top-k") {
    const std::vector<float> u = Gaussian(100000, 2);
    for (bool exact : {true, false}) {
      UplinkConfig cfg;
      cfg.density = 0.02;
      cfg.values = ValueCoding::kFp32;
      cfg.exact_topk = exact;
      auto s = DecodeUplink(Encode(u, cfg), 100000);
      REQUIRE(s.ok());
      CHECK(s->indices == TopKExact(u, 2000));
      REQUIRE(s->values.size() == 2000);
      bool same = true;
      for (size_t j = 0; j < 2000; ++j) same &= std::bit_cast<uint32_t>(s->values[j]) == std::bit_cast<uint32_t>(u[s->indices[j]]);
      CHECK(same);
    }
  }

  TEST_CASE("lossy value codings stay within their documented error bounds") {
    const std::vector<float> u = Gaussian(50000, 3, 0.01);
    UplinkConfig cfg;
    cfg.density = 0.05;
    cfg.values = ValueCoding::kInt8;
    auto s8 = DecodeUplink(Encode(u, cfg), 50000);
    REQUIRE(s8.ok());
    float max_abs = 0.0f;
    for (uint32_t i : s8->indices) max_abs = std::max(max_abs, std::fabs(u[i]));
    const float scale = max_abs / 127.0f;
    for (size_t j = 0; j < s8->indices.size(); ++j) {
      CHECK(std::fabs(s8->values[j] - u[s8->indices[j]]) <= 0.5f * scale * (1.0f + 1e-5f));
    }

    cfg.values = ValueCoding::kFp16;
    auto s16 = DecodeUplink(Encode(u, cfg), 50000);
    REQUIRE(s16.ok());
    for (size_t j = 0; j < s16->indices.size(); ++j) {
      const float x = u[s16->indices[j]];
      CHECK(std::fabs(s16->values[j] - x) <= std::fabs(x) * 0x1p-11f + 0x1p-25f);  // half an fp16 ulp
    }

    cfg.values = ValueCoding::kTernary;
    auto st = DecodeUplink(Encode(u, cfg), 50000);
    REQUIRE(st.ok());
    double sum = 0.0;
    for (uint32_t i : st->indices) sum += std::fabs(u[i]);
    const auto mu = static_cast<float>(sum / static_cast<double>(st->indices.size()));
    for (size_t j = 0; j < st->indices.size(); ++j) {
      CHECK(st->values[j] == (u[st->indices[j]] < 0.0f ? -mu : mu));
    }
  }

  TEST_CASE("ternary top-k at 1% of d = 199,210 is at least 300 times smaller than fp32") {
    const std::vector<float> u = Gaussian(199210, 4, 0.01);
    UplinkConfig cfg;  // defaults: 1%, ternary
    const std::vector<uint8_t> p = Encode(u, cfg);
    const double ratio = 4.0 * 199210 / static_cast<double>(p.size());
    INFO("payload " << p.size() << " bytes, ratio " << ratio);
    CHECK(ratio >= 300.0);
    auto info = InspectUplink(p, 199210);
    REQUIRE(info.ok());
    CHECK(info->count == 1992);
    CHECK(info->total_bytes == p.size());
    CHECK(info->index_bytes + info->value_bytes + 2 + kFrameHeaderSize == p.size());
  }

  TEST_CASE("error feedback conserves mass: everything sent plus the residual equals the raw updates") {
    const size_t d = 20000;
    for (ValueCoding coding : {ValueCoding::kTernary, ValueCoding::kInt8, ValueCoding::kFp16}) {
      std::vector<float> residual(d, 0.0f);
      std::vector<double> raw_sum(d, 0.0), sent_sum(d, 0.0);
      UplinkConfig cfg;
      cfg.density = 0.01;
      cfg.values = coding;
      for (int round = 0; round < 200; ++round) {
        const std::vector<float> u = Gaussian(d, 100 + round, 0.01);
        for (size_t i = 0; i < d; ++i) raw_sum[i] += u[i];
        auto p = EncodeUplink(u, cfg, residual);
        REQUIRE(p.ok());
        auto s = DecodeUplink(*p, d);
        REQUIRE(s.ok());
        for (size_t j = 0; j < s->indices.size(); ++j) sent_sum[s->indices[j]] += s->values[j];
      }
      double worst = 0.0, total_abs = 0.0;
      for (size_t i = 0; i < d; ++i) {
        worst = std::max(worst, std::fabs(sent_sum[i] + residual[i] - raw_sum[i]));
        total_abs += std::fabs(raw_sum[i]);
      }
      INFO("coding " << static_cast<int>(coding) << " worst per-coordinate drift " << worst);
      CHECK(worst < 1e-4);  // 200 rounds of float rounding on values of order 0.1
      CHECK(total_abs > 100.0);
    }
  }

  TEST_CASE("an all-zero update sends no entries and a residual keeps exactly what was not sent") {
    UplinkConfig cfg;
    cfg.density = 0.1;
    std::vector<float> zeros(1000, 0.0f), residual(1000, 0.0f);
    auto p = EncodeUplink(zeros, cfg, residual);
    REQUIRE(p.ok());
    auto s = DecodeUplink(*p, 1000);
    REQUIRE(s.ok());
    CHECK(s->indices.empty());
    CHECK(s->values.empty());

    const std::vector<float> u = Gaussian(1000, 8);
    cfg.values = ValueCoding::kFp32;
    auto q = EncodeUplink(u, cfg, residual);
    REQUIRE(q.ok());
    auto t = DecodeUplink(*q, 1000);
    REQUIRE(t.ok());
    CHECK(t->indices.size() == 100);
    std::vector<bool> sent(1000, false);
    for (uint32_t i : t->indices) sent[i] = true;
    bool ok = true;
    for (size_t i = 0; i < 1000; ++i) ok &= residual[i] == (sent[i] ? 0.0f : u[i]);
    CHECK(ok);
  }

  TEST_CASE("block selection: whole blocks by summed magnitude, ternary values, the residual keeps exactly what was not sent") {
    const size_t d = 10001;  // a short last block
    std::vector<float> acc = Gaussian(d, 31);
    for (size_t i = 0; i < d; i += 11) acc[i] = 0.0f;
    std::vector<float> residual(d, 0.0f), update = acc;
    // Half the mass already in the residual: selection sees update + residual.
    for (size_t i = 0; i < d; ++i) {
      residual[i] = acc[i] * 0.5f;
      update[i] = acc[i] - residual[i];
    }
    std::vector<float> sum(d);
    for (size_t i = 0; i < d; ++i) sum[i] = update[i] + residual[i];
    UplinkConfig cfg;
    cfg.density = 0.01;  // k = 100 entries: 25 blocks of 4
    cfg.block = 4;
    auto p = EncodeUplink(update, cfg, residual);
    REQUIRE(p.ok());
    auto s = DecodeUplink(*p, d);
    REQUIRE(s.ok());
    CHECK(s->indices == TopKBlocks(sum, 4, 25));
    // Every non-zero entry of a block that was sent is sent: whole blocks.
    std::vector<bool> sent(d, false);
    for (uint32_t i : s->indices) sent[i] = true;
    bool whole = true;
    for (uint32_t i : s->indices) {
      for (size_t j = i / 4 * 4; j < std::min<size_t>(d, i / 4 * 4 + 4); ++j) whole &= sent[j] || sum[j] == 0.0f;
    }
    CHECK(whole);
    CHECK(s->indices.size() > 90);
    // Ternary: +-mu with mu the mean |value| sent, in the sign of each entry.
    double mean_abs = 0;
    for (uint32_t i : s->indices) mean_abs += std::fabs(sum[i]);
    mean_abs /= static_cast<double>(s->indices.size());
    bool signs = true, residual_ok = true;
    for (size_t j = 0; j < s->indices.size(); ++j) {
      signs &= (s->values[j] < 0) == (sum[s->indices[j]] < 0);
      CHECK(std::fabs(s->values[j]) == doctest::Approx(mean_abs).epsilon(1e-5));
    }
    CHECK(signs);
    size_t at = 0;
    for (size_t i = 0; i < d; ++i) {
      const bool was_sent = at < s->indices.size() && s->indices[at] == i;
      residual_ok &= residual[i] == (was_sent ? sum[i] - s->values[at] : sum[i]);
      at += was_sent ? 1 : 0;
    }
    CHECK(residual_ok);
    // Block 1 is plain top-k; a block outside 1..kMaxSelectBlock is refused.
    cfg.block = 1;
    std::vector<float> none;
    auto plain = EncodeUplink(sum, cfg, none);
    REQUIRE(plain.ok());
    CHECK(DecodeUplink(*plain, d)->indices == TopKExact(sum, 100));
    cfg.block = 0;
    CHECK(Contains(ErrorMessage(EncodeUplink(sum, cfg, none)), "selection block 0 outside 1..4096"));
    cfg.block = kMaxSelectBlock + 1;
    CHECK(Contains(ErrorMessage(EncodeUplink(sum, cfg, none)), "selection block 4097"));
  }

  TEST_CASE("the zstd stage is kept only when it makes the payload smaller, and decodes the same") {
    SparseUpdate s;
    s.dim = 100000;
    for (uint32_t i = 0; i < 5000; ++i) {
      s.indices.push_back(i * 20);
      s.values.push_back(1.0f);
    }
    auto plain = EncodeSparseUpdate(s, ValueCoding::kFp32, false);
    auto packed = EncodeSparseUpdate(s, ValueCoding::kFp32, true);
    REQUIRE(plain.ok());
    REQUIRE(packed.ok());
    CHECK(packed->size() < plain->size());
    CHECK(InspectUplink(*packed, 100000)->zstd);
    auto a = DecodeUplink(*plain, 100000);
    auto b = DecodeUplink(*packed, 100000);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->indices == b->indices);
    CHECK(a->values == b->values);

    const std::vector<float> u = Gaussian(100000, 5);
    UplinkConfig cfg;
    cfg.try_zstd = true;
    const std::vector<uint8_t> p = Encode(u, cfg);
    cfg.try_zstd = false;
    CHECK(p.size() <= Encode(u, cfg).size());
  }

  TEST_CASE("the uplink encoder rejects non-finite updates, bad sizes and bad densities") {
    std::vector<float> u = Gaussian(100, 6);
    std::vector<float> residual(100, 0.0f);
    u[42] = NAN;
    CHECK(Contains(ErrorMessage(EncodeUplink(u, {}, residual)), "index 42 is NaN"));
    u[42] = INFINITY;
    CHECK(Contains(ErrorMessage(EncodeUplink(u, {}, residual)), "index 42 is Inf"));
    u[42] = 0.0f;
    std::vector<float> short_residual(99, 0.0f);
    CHECK(Contains(ErrorMessage(EncodeUplink(u, {}, short_residual)), "residual has 99 values"));
    UplinkConfig cfg;
    cfg.density = 0.0;
    CHECK(Contains(ErrorMessage(EncodeUplink(u, cfg, residual)), "density"));
    CHECK(Contains(ErrorMessage(EncodeUplink(std::vector<float>{}, {}, {})), "dimension 0"));
    SparseUpdate bad;
    bad.dim = 10;
    bad.indices = {1, 5, 5};
    bad.values = {1, 2, 3};
    CHECK(Contains(ErrorMessage(EncodeSparseUpdate(bad, ValueCoding::kFp32)), "not strictly increasing at position 2"));
    CHECK(Contains(ErrorMessage(ValidateSparseUpdate(bad, 10)), "not strictly increasing"));
    bad.indices = {1, 5, 10};
    CHECK(Contains(ErrorMessage(ValidateSparseUpdate(bad, 10)), "index 10 at position 2 is >= dimension 10"));
    bad.indices = {1, 5, 6};
    bad.values[1] = NAN;
    CHECK(Contains(ErrorMessage(ValidateSparseUpdate(bad, 10)), "value 1 is NaN"));
  }

  TEST_CASE("the uplink decoder rejects malformed payloads with a message naming the defect") {
    const std::vector<uint8_t> good = SmallSparse();
    REQUIRE(DecodeUplink(good, 1000).ok());
    // Truncated, anywhere.
    for (size_t n = 0; n < good.size(); ++n) {
      auto r = DecodeUplink(std::span(good).first(n), 1000);
      CHECK(!r.ok());
      CHECK(Contains(ErrorMessage(r), "truncated"));
    }
    std::vector<uint8_t> p = good;
    p[kFrameHeaderSize + 3] ^= 1;
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "checksum mismatch"));
    p = good;
    p[1] = 'X';
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "bad magic"));
    p = good;
    p[5] = 3;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "unsupported codec version 3 of uplink-sparse"));
    CHECK(Contains(ErrorMessage(DecodeUplink(good, 999)), "dimension mismatch: payload declares 1000, expected 999"));
    p = good;
    p[4] = 3;
    p[5] = 1;  // a downlink frame of a version it has
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "not an uplink codec"));
    // count > dim
    p = good;
    codec_test::PutU32At(p, 12, 1001);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "count 1001 exceeds dimension 1000"));
    // index >= dim: the last index is 999, declare dimension 999.
    p = good;
    codec_test::PutU32At(p, 8, 999);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 999)), "index 999 at position 4 is >= dimension 999"));
    // NaN and Inf values.
    p = good;
    const size_t last_value = p.size() - 4;
    codec_test::PutU32At(p, last_value, 0x7fc00000u);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "value 4 is NaN"));
    codec_test::PutU32At(p, last_value, 0xff800000u);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "value 4 is Inf"));
    p = SmallSparse(ValueCoding::kFp16);
    p[p.size() - 1] = 0x7c;
    p[p.size() - 2] = 0x00;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "fp16 value 4 is Inf"));
    p = SmallSparse(ValueCoding::kTernary);
    codec_test::PutU32At(p, kFrameHeaderSize + 2, 0x7fc00000u);  // mu
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "ternary magnitude mu is NaN"));
    // An int8 scale so large that 127 * scale overflows to Inf (found by fuzz_uplink_decode).
    p = SmallSparse(ValueCoding::kInt8);
    codec_test::PutU32At(p, kFrameHeaderSize + 2, 0x7f7fffffu);  // FLT_MAX
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "127 * scale is Inf"));
    // Oversize declared sizes.
    p = good;
    codec_test::PutU32At(p, 16, 0xFFFFFF00u);
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "exceeds the limit"));
    p = good;
    codec_test::PutU32At(p, 8, 0xFFFFFFFFu);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 0xFFFFFFFFu)), "exceeds the limit"));
    // A count the body cannot hold.
    p = good;
    codec_test::PutU32At(p, 12, 900);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "truncated sparse uplink body"));
    // Unknown value coding and flags.
    p = good;
    p[kFrameHeaderSize] = 7;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "unknown value coding 7"));
    p = good;
    p[6] = 0x80;
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 1000)), "unknown flags"));
    // Dense payload whose body does not match its dimension.
    UplinkConfig dense;
    dense.dense = true;
    p = Encode(Gaussian(10, 7), dense);
    codec_test::PutU32At(p, 8, 11);
    codec_test::PutU32At(p, 12, 11);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 11)), "dimension 11 needs 44"));
  }

  TEST_CASE("a zstd stage that declares more bytes than the dimension allows is refused") {
    SparseUpdate s;
    s.dim = 100000;
    for (uint32_t i = 0; i < 5000; ++i) {
      s.indices.push_back(i * 20);
      s.values.push_back(1.0f);
    }
    auto packed = EncodeSparseUpdate(s, ValueCoding::kFp32, true);
    REQUIRE(packed.ok());
    std::vector<uint8_t> p = *packed;
    codec_test::PutU32At(p, 12, 10);  // claim 10 entries: the declared content size is now too big
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 100000)), "zstd stage declares"));
    p = *packed;
    p.resize(p.size() - 3);
    REQUIRE(SealFrame(p).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(p, 100000)), "zstd stage"));
  }
}

}  // namespace
}  // namespace frugal
