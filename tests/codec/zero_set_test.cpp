// The zero set (frugal/codec/zero_set.h): round trips with and without a step,
// applied step-then-zeros, and every malformed frame refused by name.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "frugal/codec/frame.h"
#include "frugal/codec/zero_set.h"
#include "test_util.h"

namespace frugal {
namespace {

using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::Gaussian;

// Writes v at `at` (little-endian), bounds-checked.
void PutU32(std::vector<uint8_t>& p, size_t at, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) p.at(at + i) = static_cast<uint8_t>(v >> (8 * i));
}

// Input p's weights in a 784-input layer of 32 hidden units: the trigger scan's pattern.
std::vector<uint32_t> PrunedInputWeights(std::span<const uint32_t> inputs) {
  std::vector<uint32_t> out;
  for (uint32_t o = 0; o < 32; ++o) {
    for (uint32_t p : inputs) out.push_back(o * 784 + p);
  }
  return out;
}

TEST_SUITE("codec") {
  TEST_CASE("a zero set round-trips its step and its zeros, and applies the step before the zeros") {
    const uint32_t d = 32 * 784 + 10;
    const std::vector<uint32_t> zeros = PrunedInputWeights(std::vector<uint32_t>{696, 697, 698, 699, 724, 783});
    const std::vector<float> u = Gaussian(d, 7, 0.1);
    UplinkConfig cfg{.dense = false, .density = 0.01, .values = ValueCoding::kTernary};
    std::vector<float> residual(d, 0.0f);
    auto step = EncodeUplink(u, cfg, residual);
    REQUIRE(step.ok());
    auto plain = DecodeUplink(*step, d);
    REQUIRE(plain.ok());
    // A zero the step also touches: the zero wins.
    std::vector<uint32_t> with_touched = zeros;
    with_touched.push_back(plain->indices.back());
    std::sort(with_touched.begin(), with_touched.end());
    with_touched.erase(std::unique(with_touched.begin(), with_touched.end()), with_touched.end());

    auto bytes = EncodeZeroSet(*step, with_touched, d);
    REQUIRE(bytes.ok());
    CHECK(IsZeroSet(*bytes));
    CHECK_FALSE(IsZeroSet(*step));
    auto back = DecodeZeroSet(*bytes, d);
    REQUIRE(back.ok());
    CHECK(back->has_step);
    CHECK(back->step.indices == plain->indices);
    CHECK(back->step.values == plain->values);
    CHECK(back->zeros == with_touched);
    // The index section is compact: the pattern's gaps cost well under 4 bytes an index.
    CHECK(bytes->size() - step->size() < 2 * with_touched.size());

    std::vector<float> model = Gaussian(d, 8, 0.05), reference = model;
    ApplyZeroSetPiece(*back, model);
    for (size_t j = 0; j < plain->indices.size(); ++j) reference[plain->indices[j]] += plain->values[j];
    for (uint32_t z : with_touched) reference[z] = 0.0f;
    CHECK(model == reference);

    // DecodeBroadcastStep reads either kind.
    std::vector<uint32_t> got;
    auto s1 = DecodeBroadcastStep(*bytes, d, &got);
    REQUIRE(s1.ok());
    CHECK(got == with_touched);
    auto s2 = DecodeBroadcastStep(*step, d, &got);
    REQUIRE(s2.ok());
    CHECK(got.empty());
    CHECK(s2->indices == plain->indices);

    // Without a step, and with no zeros at all.
    auto only = EncodeZeroSet({}, zeros, d);
    REQUIRE(only.ok());
    auto only_back = DecodeZeroSet(*only, d);
    REQUIRE(only_back.ok());
    CHECK_FALSE(only_back->has_step);
    CHECK(only_back->zeros == zeros);
    auto none = EncodeZeroSet({}, {}, d);
    REQUIRE(none.ok());
    auto none_back = DecodeZeroSet(*none, d);
    REQUIRE(none_back.ok());
    CHECK(none_back->zeros.empty());
  }

  TEST_CASE("zero sets that are unsorted, out of range or malformed are refused by name") {
    const uint32_t d = 1000;
    CHECK(Contains(ErrorMessage(EncodeZeroSet({}, std::vector<uint32_t>{5, 3}, d)), "zero set"));
    CHECK_FALSE(EncodeZeroSet({}, std::vector<uint32_t>{1000}, d).ok());
    CHECK_FALSE(EncodeZeroSet({}, std::vector<uint32_t>{1}, 0).ok());
    auto good = EncodeZeroSet({}, std::vector<uint32_t>{3, 90, 400}, d);
    REQUIRE(good.ok());
    CHECK(Contains(ErrorMessage(DecodeZeroSet(*good, d + 1)), "dimension"));
    std::vector<uint8_t> cut(good->begin(), good->end() - 1);
    CHECK_FALSE(DecodeZeroSet(cut, d).ok());
    std::vector<uint8_t> trailing = *good;
    trailing.push_back(0);
    CHECK_FALSE(DecodeZeroSet(trailing, d).ok());
    // A step length past the body, resealed so only the length is wrong.
    std::vector<uint8_t> long_step = *good;
    PutU32(long_step, kFrameHeaderSize + 1, 1000);
    REQUIRE(SealFrame(long_step).ok());
    CHECK(Contains(ErrorMessage(DecodeZeroSet(long_step, d)), "step of 1000 bytes"));
    // More zeros declared than the dimension holds.
    std::vector<uint8_t> many = *good;
    PutU32(many, 12, d + 1);
    REQUIRE(SealFrame(many).ok());
    CHECK(Contains(ErrorMessage(DecodeZeroSet(many, d)), "zeros in dimension"));
    // A step that is not an uplink payload.
    auto nested = EncodeZeroSet(*good, std::vector<uint32_t>{1}, d);
    REQUIRE(nested.ok());
    CHECK(Contains(ErrorMessage(DecodeZeroSet(*nested, d)), "zero set's step"));
    // An uplink payload is not a zero set.
    auto up = EncodeUplink(Gaussian(d, 1), UplinkConfig{}, {});
    REQUIRE(up.ok());
    CHECK(Contains(ErrorMessage(DecodeZeroSet(*up, d)), "uplink-sparse"));
  }
}

}  // namespace
}  // namespace frugal
