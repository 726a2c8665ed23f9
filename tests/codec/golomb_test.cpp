#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/golomb.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::RandomSubset;

TEST_SUITE("codec") {
  TEST_CASE("the STC Rice parameter follows b* = 1 + floor(log2(ln(phi-1)/ln(1-p)))") {
    CHECK(RiceParameterForDensity(0.01) == 6);
    CHECK(RiceParameterForDensity(0.001) == 9);
    CHECK(RiceParameterForDensity(0.1) == 3);
    CHECK(RiceParameterForDensity(0.5) == 0);
    CHECK(RiceParameterForDensity(1.0) == 0);
  }

  TEST_CASE("Rice-coded indices round-trip exactly at every density") {
    for (double p : {0.0001, 0.01, 0.3, 0.9, 1.0}) {
      const uint32_t d = 50000;
      const auto k = static_cast<uint32_t>(p * d);
      const std::vector<uint32_t> idx = RandomSubset(d, k, 11);
      const int b = ChooseRiceParameter(idx, d);
      auto bytes = EncodeRiceIndices(idx, d, b);
      REQUIRE(bytes.ok());
      CHECK(bytes->size() == (RiceCodeBits(idx, b) + 7) / 8);
      auto back = DecodeRiceIndices(*bytes, k, d, b);
      REQUIRE(back.ok());
      CHECK(*back == idx);
    }
    const std::vector<uint32_t> edge = {0, 1, 49999};
    auto bytes = EncodeRiceIndices(edge, 50000, 4);
    REQUIRE(bytes.ok());
    CHECK(*DecodeRiceIndices(*bytes, 3, 50000, 4) == edge);
  }

  TEST_CASE("Golomb index cost is within 2% of log2 C(d,k)/k bits per index") {
    for (uint32_t d : {199210u, 1663370u}) {
      for (double p : {0.001, 0.0025, 0.01, 0.1}) {
        const auto k = static_cast<uint32_t>(std::llround(p * d));
        const std::vector<uint32_t> idx = RandomSubset(d, k, d + k);
        const int b = ChooseRiceParameter(idx, d);
        auto bytes = EncodeRiceIndices(idx, d, b);
        REQUIRE(bytes.ok());
        const double bits_per_index = 8.0 * static_cast<double>(bytes->size()) / k;
        const double bound = Log2Binomial(d, k) / k;
        const double stc_bits = static_cast<double>(RiceCodeBits(idx, RiceParameterForDensity(p))) / k;
        INFO("d=" << d << " p=" << p << " b=" << b << " bits/index=" << bits_per_index << " bound=" << bound
                  << " stc b* bits/index=" << stc_bits);
        CHECK(bits_per_index <= 1.02 * bound);
        CHECK(bits_per_index >= bound * 0.999);  // no code beats the entropy of a uniform subset by much
      }
    }
  }

  TEST_CASE("the Rice decoder rejects indices past the dimension, cut-off codes, bad padding and impossible counts") {
    const std::vector<uint32_t> idx = {3, 10, 99};
    auto bytes = EncodeRiceIndices(idx, 100, 2);
    REQUIRE(bytes.ok());
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(*bytes, 3, 99, 2)), ">= dimension 99"));
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(std::span(*bytes).first(bytes->size() - 1), 3, 100, 2)),
                   "index 2"));
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(*bytes, 101, 100, 2)), "exceeds dimension"));
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(*bytes, 90, 100, 2)), "truncated index section"));
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(*bytes, 2, 100, 2)), "unused trailing bytes"));
    auto odd = EncodeRiceIndices(idx, 100, 3);  // 23 bits: one padding bit
    REQUIRE(odd.ok());
    REQUIRE(odd->size() == 3);
    std::vector<uint8_t> padded = *odd;
    padded.back() |= 0x80;
    CHECK(Contains(ErrorMessage(DecodeRiceIndices(padded, 3, 100, 3)), "padding"));
    const std::vector<uint32_t> repeated = {5, 5};
    CHECK(Contains(ErrorMessage(EncodeRiceIndices(repeated, 100, 2)), "not strictly increasing"));
    CHECK(Contains(ErrorMessage(EncodeRiceIndices(idx, 50, 2)), ">= dimension 50"));
  }
}

}  // namespace
}  // namespace frugal
