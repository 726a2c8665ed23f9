#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/adaptive_rice.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/golomb.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::RandomSubset;

std::vector<uint32_t> Range(uint32_t from, uint32_t to, uint32_t step = 1) {
  std::vector<uint32_t> v;
  for (uint32_t i = from; i < to; i += step) v.push_back(i);
  return v;
}

// Adversarial and typical index sets, each with its dimension.
struct Case {
  const char* what;
  uint32_t dim;
  std::vector<uint32_t> indices;
};

std::vector<Case> Cases() {
  std::vector<Case> c;
  c.push_back({"empty", 1000, {}});
  c.push_back({"k = 1, first index", 1000, {0}});
  c.push_back({"k = 1, last index", 1000, {999}});
  c.push_back({"first and last", 199210, {0, 199209}});
  c.push_back({"k = d", 5000, Range(0, 5000)});
  c.push_back({"k = d = 1", 1, {0}});
  c.push_back({"all in one layer (the last 2,010 of the 2NN)", 199210, Range(197200, 199210)});
  c.push_back({"all in the first layer, every 3rd", 199210, Range(0, 156800, 3)});
  c.push_back({"last index of the largest dimension", kMaxCodecDim, {kMaxCodecDim - 1}});
  c.push_back({"first and last of the largest dimension", kMaxCodecDim, {0, kMaxCodecDim - 1}});
  std::vector<uint32_t> runs;  // clustered runs separated by long empty stretches
  for (uint32_t start : {10u, 40000u, 41000u, 150000u, 199000u}) {
    for (uint32_t i = start; i < start + 150; i += 1 + (i % 3)) runs.push_back(i);
  }
  c.push_back({"clustered runs", 199210, runs});
  for (double p : {0.0005, 0.01, 0.1, 0.5, 0.95}) {
    const auto k = static_cast<uint32_t>(p * 60000);
    c.push_back({"uniform", 60000, RandomSubset(60000, k, k)});
  }
  return c;
}

// Bytes that are not the encoding of `original`: the decoder must refuse them, or decode
// them to other indices whose encoding is exactly these bytes (the code is canonical;
// integrity is the frame checksum's job).
void CheckRefusedOrCanonical(std::span<const uint8_t> bytes, const std::vector<uint32_t>& original, uint32_t dim,
                             int b) {
  auto r = DecodeAdaptiveRiceIndices(bytes, static_cast<uint32_t>(original.size()), dim, b);
  if (!r.ok()) return;
  CHECK(*r != original);
  auto again = EncodeAdaptiveRiceIndices(*r, dim, b);
  REQUIRE(again.ok());
  CHECK(std::equal(again->begin(), again->end(), bytes.begin(), bytes.end()));
}

TEST_SUITE("codec") {
  TEST_CASE("adaptive Rice round-trips every index set at every Rice parameter, and is canonical") {
    for (const Case& c : Cases()) {
      for (int b : {0, 1, ChooseRiceParameter(c.indices, c.dim), 12, kMaxRiceParameter}) {
        INFO(std::string(c.what) << " dim=" << c.dim << " k=" << c.indices.size() << " b=" << b);
        auto bytes = EncodeAdaptiveRiceIndices(c.indices, c.dim, b);
        REQUIRE(bytes.ok());
        CHECK((bytes->empty() || bytes->back() != 0));
        auto back = DecodeAdaptiveRiceIndices(*bytes, static_cast<uint32_t>(c.indices.size()), c.dim, b);
        REQUIRE(back.ok());
        CHECK(*back == c.indices);
        // One more byte, or one fewer, is refused or is the one encoding of another set.
        std::vector<uint8_t> longer = *bytes;
        longer.push_back(1);
        CheckRefusedOrCanonical(longer, c.indices, c.dim, b);
        if (!bytes->empty()) CheckRefusedOrCanonical(std::span(*bytes).first(bytes->size() - 1), c.indices, c.dim, b);
      }
    }
  }

  TEST_CASE("an index section is adaptive only when shorter than plain Rice, and decodes either way") {
    int adaptive = 0;
    for (const Case& c : Cases()) {
      INFO(std::string(c.what));
      auto s = EncodeIndexSection(c.indices, c.dim);
      REQUIRE(s.ok());
      const uint64_t rice_bytes = (RiceCodeBits(c.indices, s->rice_parameter) + 7) / 8;
      CHECK(s->bytes.size() <= rice_bytes);
      CHECK(s->adaptive == (s->bytes.size() < rice_bytes));
      adaptive += s->adaptive;
      auto back = DecodeIndexSection(s->bytes, static_cast<uint32_t>(c.indices.size()), c.dim, s->rice_parameter,
                                     s->adaptive);
      REQUIRE(back.ok());
      CHECK(*back == c.indices);
    }
    CHECK(adaptive >= 5);  // the clustered, dense and one-layer sets
    // An adaptive section that is not shorter than plain Rice is never sent, so it is refused.
    const std::vector<uint32_t> uniform = RandomSubset(60000, 600, 3);
    const int b = ChooseRiceParameter(uniform, 60000);
    auto rice = EncodeRiceIndices(uniform, 60000, b);
    auto adapt = EncodeAdaptiveRiceIndices(uniform, 60000, b);
    REQUIRE((rice.ok() && adapt.ok()));
    if (adapt->size() >= rice->size()) {
      CHECK(Contains(ErrorMessage(DecodeIndexSection(*adapt, 600, 60000, b, true)), "not shorter than plain Rice"));
    }
  }

  TEST_CASE("the adaptive decoder refuses bad parameters, indices past the dimension and tampered bytes") {
    const std::vector<uint32_t> idx = Range(100, 400, 2);
    auto bytes = EncodeAdaptiveRiceIndices(idx, 1000, 3);
    REQUIRE(bytes.ok());
    const auto k = static_cast<uint32_t>(idx.size());
    CHECK(Contains(ErrorMessage(DecodeAdaptiveRiceIndices(*bytes, k, 1000, 31)), "outside [0, 30]"));
    CHECK(Contains(ErrorMessage(DecodeAdaptiveRiceIndices(*bytes, 1001, 1000, 3)), "exceeds dimension"));
    CHECK(Contains(ErrorMessage(DecodeAdaptiveRiceIndices(*bytes, k, kMaxCodecDim + 1, 3)), "exceeds the limit"));
    CHECK(Contains(ErrorMessage(DecodeAdaptiveRiceIndices(*bytes, k, 300, 3)), ">= dimension 300"));
    std::vector<uint8_t> zero_end = *bytes;
    zero_end.push_back(0);
    CHECK(Contains(ErrorMessage(DecodeAdaptiveRiceIndices(zero_end, k, 1000, 3)), "zero byte"));
    CHECK(Contains(ErrorMessage(EncodeAdaptiveRiceIndices(std::vector<uint32_t>{5, 5}, 100, 2)),
                   "not strictly increasing"));
    CHECK(Contains(ErrorMessage(EncodeAdaptiveRiceIndices(idx, 300, 2)), ">= dimension 300"));
    // Any single-bit change either fails or is itself the one encoding of what it decodes to.
    for (size_t at = 0; at < bytes->size(); ++at) {
      for (int bit = 0; bit < 8; ++bit) {
        std::vector<uint8_t> t = *bytes;
        t[at] ^= static_cast<uint8_t>(1u << bit);
        CheckRefusedOrCanonical(t, idx, 1000, 3);
      }
    }
  }

  TEST_CASE("uplink frames are version 2; version 1 frames (plain Rice) still decode; others are refused") {
    SparseUpdate s;
    s.dim = 199210;
    s.indices = Range(197200, 199210);  // one layer: adaptive
    s.values.assign(s.indices.size(), 0.5f);
    auto p = EncodeSparseUpdate(s, ValueCoding::kFp32);
    REQUIRE(p.ok());
    CHECK((*p)[5] == kUplinkSparseVersion);
    auto info = InspectUplink(*p, s.dim);
    REQUIRE(info.ok());
    CHECK(info->adaptive_indices);
    auto back = DecodeUplink(*p, s.dim);
    REQUIRE(back.ok());
    CHECK(back->indices == s.indices);
    CHECK(back->values == s.values);

    // Reserved bits of the parameter byte.
    std::vector<uint8_t> t = *p;
    t[kFrameHeaderSize + 1] |= 0x20;
    REQUIRE(SealFrame(t).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(t, s.dim)), "reserved bits"));

    // A version-1 frame, written as version 1 wrote it: the byte is b, the section plain Rice.
    const int b = ChooseRiceParameter(s.indices, s.dim);
    auto rice = EncodeRiceIndices(s.indices, s.dim, b);
    REQUIRE(rice.ok());
    std::vector<uint8_t> body = {static_cast<uint8_t>(ValueCoding::kFp32), static_cast<uint8_t>(b)};
    body.insert(body.end(), rice->begin(), rice->end());
    for (float v : s.values) {
      const auto bits = std::bit_cast<uint32_t>(v);
      for (int i = 0; i < 4; ++i) body.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    }
    FrameHeader h;
    h.codec = CodecId::kUplinkSparse;
    h.version = 1;
    h.dim = s.dim;
    h.count = static_cast<uint32_t>(s.indices.size());
    std::vector<uint8_t> v1;
    REQUIRE(AppendFrame(h, body, &v1).ok());
    auto old = DecodeUplink(v1, s.dim);
    REQUIRE(old.ok());
    CHECK(old->indices == s.indices);
    CHECK(!InspectUplink(v1, s.dim)->adaptive_indices);
    // Version 1 has no adaptive flag: the same byte is an out-of-range parameter there.
    v1[kFrameHeaderSize + 1] |= 0x80;
    REQUIRE(SealFrame(v1).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(v1, s.dim)), "exceeds 30"));
    v1[5] = 3;
    REQUIRE(SealFrame(v1).ok());
    CHECK(Contains(ErrorMessage(DecodeUplink(v1, s.dim)), "unsupported codec version 3 of uplink-sparse"));
  }
}

}  // namespace
}  // namespace frugal
