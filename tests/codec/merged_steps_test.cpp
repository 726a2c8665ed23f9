// The merged-steps downlink piece (EncodeMergedSteps / DecodeMergedSteps): a chain
// of broadcast steps coded as one, checked against the plain reference that
// applies the steps one at a time.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;
using codec_test::Gaussian;

uint32_t GetU32At(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

bool SameSteps(const std::vector<SparseUpdate>& a, const std::vector<SparseUpdate>& b) {
  if (a.size() != b.size()) return false;
  for (size_t t = 0; t < a.size(); ++t) {
    if (a[t].dim != b[t].dim || a[t].indices != b[t].indices || a[t].values.size() != b[t].values.size()) return false;
    if (std::memcmp(a[t].values.data(), b[t].values.data(), 4 * a[t].values.size()) != 0) return false;
  }
  return true;
}

// The plain reference: each step's values added to the model in chain order.
std::vector<float> ApplyOneByOne(std::vector<float> model, const std::vector<SparseUpdate>& steps) {
  for (const SparseUpdate& s : steps) {
    for (size_t j = 0; j < s.indices.size(); ++j) model[s.indices[j]] += s.values[j];
  }
  return model;
}

// Broadcast-like steps: STC (top-k + ternary with error feedback) of a slowly
// drifting server update, so consecutive supports overlap as the real ones do.
std::vector<std::vector<uint8_t>> StcChain(uint32_t d, size_t steps, double density, uint64_t seed) {
  std::vector<float> residual(d, 0.0f);
  const std::vector<float> drift = Gaussian(d, seed, 0.01);
  UplinkConfig cfg;
  cfg.density = density;
  std::vector<std::vector<uint8_t>> out;
  for (size_t t = 0; t < steps; ++t) {
    std::vector<float> u = Gaussian(d, seed + 1 + t, 0.004);
    for (uint32_t i = 0; i < d; ++i) u[i] += drift[i];
    auto e = EncodeUplink(u, cfg, residual);
    REQUIRE(e.ok());
    out.push_back(*e);
  }
  return out;
}

std::vector<SparseUpdate> DecodeAll(const std::vector<std::vector<uint8_t>>& pieces, uint32_t d) {
  std::vector<SparseUpdate> steps;
  for (const auto& p : pieces) {
    auto u = DecodeUplink(p, d);
    REQUIRE(u.ok());
    steps.push_back(*u);
  }
  return steps;
}

TEST_SUITE("codec") {
  TEST_CASE("merged STC steps decode to exactly the chain's steps, and applied in order give its model bit for bit") {
    const uint32_t d = 20000;
    for (size_t t_count : {1, 2, 5, 12, 40}) {
      CAPTURE(t_count);
      const auto pieces = StcChain(d, t_count, 0.005, 100 + t_count);
      const std::vector<SparseUpdate> steps = DecodeAll(pieces, d);
      auto merged = EncodeMergedSteps(steps, d);
      REQUIRE(merged.ok());
      auto back = DecodeMergedSteps(*merged, d);
      REQUIRE(back.ok());
      CHECK(SameSteps(*back, steps));
      const std::vector<float> base = Gaussian(d, 7, 0.05);
      const std::vector<float> want = ApplyOneByOne(base, steps);
      const std::vector<float> got = ApplyOneByOne(base, *back);
      CHECK(std::memcmp(want.data(), got.data(), 4 * d) == 0);
      size_t chain_bytes = 0;
      for (const auto& p : pieces) chain_bytes += p.size();
      // Overlapping supports: the union, the presence marks and the signs cost
      // less than the steps' own indices and signs (and one frame, not t_count).
      if (t_count >= 5) CHECK(merged->size() < chain_bytes);
      MESSAGE("steps " << t_count << ": chain " << chain_bytes << " bytes, merged " << merged->size());
    }
  }

  TEST_CASE("merged steps keep every step's distinct values: int8 steps, signed zeros, disjoint supports") {
    const uint32_t d = 3000;
    Rng rng(5);
    std::vector<SparseUpdate> steps;
    for (int t = 0; t < 6; ++t) {
      SparseUpdate s;
      s.dim = d;
      for (uint32_t i = static_cast<uint32_t>(t) * 400; i < static_cast<uint32_t>(t) * 400 + 900 && i < d; i += 1 + rng.UniformInt(3)) {
        s.indices.push_back(i);
        if (t == 2) {
          s.values.push_back(0.001f * static_cast<float>(static_cast<int>(rng.UniformInt(255)) - 127));  // int8 levels
        } else if (t == 4) {
          s.values.push_back(rng.UniformInt(2) ? 0.0f : -0.0f);
        } else {
          s.values.push_back(rng.UniformInt(2) ? 0.25f : -0.25f);
        }
      }
      steps.push_back(s);
    }
    auto merged = EncodeMergedSteps(steps, d);
    REQUIRE(merged.ok());
    auto back = DecodeMergedSteps(*merged, d);
    REQUIRE(back.ok());
    CHECK(SameSteps(*back, steps));  // -0.0 and +0.0 kept apart (bit-compared)
    // Version 2: the -0.25, +0.25 steps as one magnitude; the int8 step and the -0, +0 pair as they are.
    auto v2 = EncodeMergedSteps(steps, d, 2);
    REQUIRE(v2.ok());
    auto back2 = DecodeMergedSteps(*v2, d);
    REQUIRE(back2.ok());
    CHECK(SameSteps(*back2, steps));
    CHECK(v2->size() + 4 * 4 == merged->size());
  }

  TEST_CASE("the merged-steps encoder refuses what it cannot code losslessly, naming it") {
    const uint32_t d = 100;
    SparseUpdate ok{d, {1, 5, 9}, {0.5f, -0.5f, 0.5f}};
    CHECK(Contains(ErrorMessage(EncodeMergedSteps({}, d)), "no steps"));
    SparseUpdate empty{d, {}, {}};
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(std::vector<SparseUpdate>{ok, empty}, d)), "step 1 is empty"));
    SparseUpdate unsorted{d, {5, 1}, {0.5f, 0.5f}};
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(std::vector<SparseUpdate>{unsorted}, d)), "step 0"));
    SparseUpdate nan{d, {1}, {std::numeric_limits<float>::quiet_NaN()}};
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(std::vector<SparseUpdate>{nan}, d)), "non-finite"));
    SparseUpdate other{d + 1, {1}, {0.5f}};
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(std::vector<SparseUpdate>{other}, d)), "dimension 101"));
    SparseUpdate many{d, {}, {}};
    for (uint32_t i = 0; i < d; ++i) {
      many.indices.push_back(i);
      many.values.push_back(static_cast<float>(i));  // 100 levels: fine
    }
    CHECK(EncodeMergedSteps(std::vector<SparseUpdate>{many}, d).ok());
    SparseUpdate too_many{300, {}, {}};
    for (uint32_t i = 0; i < 300; ++i) {
      too_many.indices.push_back(i);
      too_many.values.push_back(static_cast<float>(i));
    }
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(std::vector<SparseUpdate>{too_many}, 300)), "300 distinct values"));
  }

  TEST_CASE("the merged-steps decoder refuses damaged, foreign and non-canonical payloads with an error naming the defect") {
    const uint32_t d = 2000;
    const std::vector<SparseUpdate> steps = DecodeAll(StcChain(d, 4, 0.01, 9), d);
    auto good = EncodeMergedSteps(steps, d);
    REQUIRE(good.ok());
    const std::vector<uint8_t>& p = *good;
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(p, d + 1)), "dimension mismatch"));
    CHECK(!DecodeMergedSteps(std::span(p).first(p.size() - 1), d).ok());
    CHECK(!DecodeMergedSteps(std::span(p).first(10), d).ok());
    // Edits below are resealed (length and CRC fixed), so the body's own checks answer.
    auto sealed = [](std::vector<uint8_t> b) {
      REQUIRE(SealFrame(b).ok());
      return b;
    };
    const size_t body = kFrameHeaderSize;
    std::vector<uint8_t> b = p;
    b.push_back(0x5a);  // a trailing symbol byte
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "not the encoding"));
    b = p;
    codec_test::PutU32At(b, body, d + 1);  // union larger than the model
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "union of 2001"));
    b = p;
    codec_test::PutU32At(b, body + 5, 1u << 30);  // index section longer than the body
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "index section declares"));
    b = p;
    b[4] = static_cast<uint8_t>(CodecId::kDownlinkQuantized);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "not a merged-steps payload"));
    b = p;
    codec_test::PutU32At(b, 12, kMaxMergedSteps + 1);  // frame count: steps
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "exceed the limit"));
    // Step 0's level table: swap its two ternary levels (no longer ascending).
    uint32_t index_len = 0;
    std::memcpy(&index_len, p.data() + body + 5, 4);
    const size_t levels0 = body + 9 + index_len;
    REQUIRE(p[levels0] == 2);
    b = p;
    std::memcpy(&b[levels0 + 1], &p[levels0 + 5], 4);
    std::memcpy(&b[levels0 + 5], &p[levels0 + 1], 4);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "not strictly ascending"));
    b = p;
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(&b[levels0 + 5], &inf, 4);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "NaN/Inf"));
    b = p;
    b[levels0] = 0;
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "declares no values"));
  }
  TEST_CASE("merged steps version 2 decode to exactly the chain's steps, and applied in order give its model bit for bit") {
    const uint32_t d = 20000;
    for (size_t t_count : {1, 2, 5, 12, 40}) {
      CAPTURE(t_count);
      const auto pieces = StcChain(d, t_count, 0.005, 300 + t_count);
      const std::vector<SparseUpdate> steps = DecodeAll(pieces, d);
      auto v2 = EncodeMergedSteps(steps, d, 2);
      REQUIRE(v2.ok());
      CHECK((*v2)[5] == 2);  // the frame's version byte
      auto back = DecodeMergedSteps(*v2, d);
      REQUIRE(back.ok());
      CHECK(SameSteps(*back, steps));
      const std::vector<float> base = Gaussian(d, 8, 0.05);
      const std::vector<float> want = ApplyOneByOne(base, steps);
      const std::vector<float> got = ApplyOneByOne(base, *back);
      CHECK(std::memcmp(want.data(), got.data(), 4 * d) == 0);
      // Version 1 of the same steps is still written and read, and decodes to the same steps.
      auto v1 = EncodeMergedSteps(steps, d, 1);
      REQUIRE(v1.ok());
      CHECK((*v1)[5] == 1);
      auto back1 = DecodeMergedSteps(*v1, d);
      REQUIRE(back1.ok());
      CHECK(SameSteps(*back1, steps));
      CHECK(*v1 == *EncodeMergedSteps(steps, d));  // the default is version 1
      CHECK(v2->size() + 4 * t_count == v1->size());  // every STC step is a -mu, +mu pair
    }
  }

  TEST_CASE("merged steps version 2 sends a -m, +m step's levels as m: 4 bytes a step fewer, the values bit for bit") {
    const uint32_t d = 4000;
    Rng rng(17);
    std::vector<SparseUpdate> steps;
    for (int t = 0; t < 8; ++t) {
      SparseUpdate s;
      s.dim = d;
      const float mu = 0.01f * static_cast<float>(t + 1) / 3.0f;
      for (uint32_t i = 0; i < d; ++i) {
        if (rng.UniformInt(50) == 0) {
          s.indices.push_back(i);
          s.values.push_back(rng.UniformInt(2) ? mu : -mu);
        }
      }
      steps.push_back(s);
    }
    auto v1 = EncodeMergedSteps(steps, d, 1);
    auto v2 = EncodeMergedSteps(steps, d, 2);
    REQUIRE(v1.ok());
    REQUIRE(v2.ok());
    uint32_t index_len = 0;
    std::memcpy(&index_len, v2->data() + kFrameHeaderSize + 5, 4);
    const size_t levels = kFrameHeaderSize + 9 + index_len;
    for (int t = 0; t < 8; ++t) CHECK((*v2)[levels + 5 * t] == 0);  // each step: byte 0, then m
    auto back = DecodeMergedSteps(*v2, d);
    REQUIRE(back.ok());
    CHECK(SameSteps(*back, steps));
    // The index section and the symbols are version 1's: exactly 4 bytes a step fewer.
    CHECK(v2->size() + 8 * 4 == v1->size());
    CHECK(std::equal(v1->end() - 64, v1->end(), v2->end() - 64));
  }

  TEST_CASE("merged steps: version 2's level pair and the version byte are checked, with errors naming the defect") {
    const uint32_t d = 2000;
    const std::vector<SparseUpdate> steps = DecodeAll(StcChain(d, 4, 0.01, 19), d);
    auto good = EncodeMergedSteps(steps, d, 2);
    REQUIRE(good.ok());
    const std::vector<uint8_t>& p = *good;
    auto sealed = [](std::vector<uint8_t> b) {
      REQUIRE(SealFrame(b).ok());
      return b;
    };
    uint32_t index_len = 0;
    std::memcpy(&index_len, p.data() + kFrameHeaderSize + 5, 4);
    const size_t levels0 = kFrameHeaderSize + 9 + index_len;
    REQUIRE(p[levels0] == 0);
    std::vector<uint8_t> b = p;
    const float neg = -0.5f;
    std::memcpy(&b[levels0 + 1], &neg, 4);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "not finite and positive"));
    b = p;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&b[levels0 + 1], &nan, 4);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "not finite and positive"));
    b = p;
    b[5] = 5;  // a version this build does not know
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "unsupported codec version 5"));
    b = p;
    b[5] = 4;  // version 4 needs the client's kept steps: DecodeMergedStepsV4
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "kept steps"));
    b = p;
    b[5] = 1;  // version 2's bytes read as version 1: the pair's count 0 is refused
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d)), "declares no values"));
    // A -m, +m pair written out in full is not what version 2 writes.
    auto v1 = EncodeMergedSteps(steps, d, 1);
    REQUIRE(v1.ok());
    b = *v1;
    b[5] = 2;
    CHECK(!DecodeMergedSteps(sealed(b), d).ok());
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(steps, d, 4)), "no format version 4"));
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(steps, d, 0)), "no format version 0"));
  }
  // Steps that lie mostly on a guide of blocks, as a secure round's broadcast
  // steps lie on their rounds' supports (docs/benchmarks.md, "Seventeenth session").
  std::vector<SparseUpdate> GuidedSteps(uint32_t d, const std::vector<uint32_t>& guide, size_t t_count, uint64_t seed) {
    Rng rng(seed);
    std::vector<SparseUpdate> steps;
    for (size_t t = 0; t < t_count; ++t) {
      SparseUpdate s;
      s.dim = d;
      const float mu = 0.003f * static_cast<float>(t + 2);
      for (uint32_t i = 0; i < d; ++i) {
        const bool on = std::binary_search(guide.begin(), guide.end(), i);
        if (rng.UniformInt(on ? 8 : 400) == 0) {
          s.indices.push_back(i);
          s.values.push_back(rng.UniformInt(2) ? mu : -mu);
        }
      }
      steps.push_back(s);
    }
    return steps;
  }

  std::vector<uint32_t> BlockGuide(uint32_t d, uint64_t seed) {
    Rng rng(seed);
    std::vector<uint32_t> g;
    for (uint32_t b = 0; b * 16 < d; ++b) {
      if (rng.UniformInt(20) != 0) continue;
      for (uint32_t i = b * 16; i < std::min(d, b * 16 + 16); ++i) g.push_back(i);
    }
    return g;
  }

  TEST_CASE("merged steps version 3 (coded given the guide) decode to exactly the steps, and applied in order give the chain's model bit for bit") {
    const uint32_t d = 40000;
    const std::vector<uint32_t> guide = BlockGuide(d, 41);
    for (size_t t_count : {1, 2, 6, 15}) {
      CAPTURE(t_count);
      const std::vector<SparseUpdate> steps = GuidedSteps(d, guide, t_count, 50 + t_count);
      auto v3 = EncodeMergedSteps(steps, d, 3, guide);
      REQUIRE(v3.ok());
      CHECK((*v3)[5] == 3);
      auto back = DecodeMergedSteps(*v3, d, guide);
      REQUIRE(back.ok());
      CHECK(SameSteps(*back, steps));
      const std::vector<float> base = Gaussian(d, 9, 0.05);
      const std::vector<float> want = ApplyOneByOne(base, steps);
      const std::vector<float> got = ApplyOneByOne(base, *back);
      CHECK(std::memcmp(want.data(), got.data(), 4 * d) == 0);
      // Most of the union in the guide: its positions cost less than in version 2's one section.
      auto v2 = EncodeMergedSteps(steps, d, 2);
      REQUIRE(v2.ok());
      CHECK(v3->size() < v2->size());
      MESSAGE("steps " << t_count << ": version 2 " << v2->size() << " bytes, version 3 " << v3->size());
    }
  }

  TEST_CASE("merged steps version 3: a union wholly in or wholly outside the guide, an empty guide, and the guide covering everything") {
    const uint32_t d = 3000;
    const std::vector<uint32_t> guide = BlockGuide(d, 43);
    std::vector<uint32_t> everything(d);
    for (uint32_t i = 0; i < d; ++i) everything[i] = i;
    SparseUpdate in_only{d, {}, {}}, out_only{d, {}, {}};
    for (uint32_t i = 0; i < d; i += 7) {
      const bool on = std::binary_search(guide.begin(), guide.end(), i);
      (on ? in_only : out_only).indices.push_back(i);
      (on ? in_only : out_only).values.push_back(i % 2 ? 0.5f : -0.5f);
    }
    REQUIRE(!in_only.indices.empty());
    const std::vector<std::vector<SparseUpdate>> cases{{in_only}, {out_only}, {in_only, out_only}};
    for (const auto& steps : cases) {
      const std::vector<uint32_t> none;
      const std::array<const std::vector<uint32_t>*, 3> guides{&guide, &everything, &none};
      for (const std::vector<uint32_t>* use_ptr : guides) {
        const std::vector<uint32_t>& use = *use_ptr;
        auto p = EncodeMergedSteps(steps, d, 3, use);
        REQUIRE(p.ok());
        auto back = DecodeMergedSteps(*p, d, use);
        REQUIRE_MESSAGE(back.ok(), back.error().ToString());
        CHECK(SameSteps(*back, steps));
      }
    }
  }

  TEST_CASE("merged steps version 3 refuses another guide, a malformed guide and damaged sections, naming the defect") {
    const uint32_t d = 5000;
    const std::vector<uint32_t> guide = BlockGuide(d, 47);
    const std::vector<SparseUpdate> steps = GuidedSteps(d, guide, 5, 61);
    auto good = EncodeMergedSteps(steps, d, 3, guide);
    REQUIRE(good.ok());
    const std::vector<uint8_t>& p = *good;
    std::vector<uint32_t> other = guide;
    other.pop_back();
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(p, d, other)), "another guide"));
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(p, d)), "another guide"));  // no guide at all
    std::vector<uint32_t> unsorted = guide;
    std::swap(unsorted[0], unsorted[1]);
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(p, d, unsorted)), "not strictly ascending"));
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(steps, d, 3, unsorted)), "not strictly ascending"));
    std::vector<uint32_t> outside = guide;
    outside.push_back(d);
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(steps, d, 3, outside)), "inside dimension"));
    auto sealed = [](std::vector<uint8_t> b) {
      REQUIRE(SealFrame(b).ok());
      return b;
    };
    const size_t body = kFrameHeaderSize;
    std::vector<uint8_t> b = p;
    codec_test::PutU32At(b, body + 8, GetU32At(p, body) + 1);  // more in the guide than the union
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d, guide)), "in the guide"));
    b = p;
    codec_test::PutU32At(b, body + 13, 1u << 30);  // the in-guide section longer than the body
    CHECK(Contains(ErrorMessage(DecodeMergedSteps(sealed(b), d, guide)), "in-guide index section declares"));
    b = p;
    codec_test::PutU32At(b, body + 8, 0);  // none in the guide: the in-guide section must then be empty
    CHECK(!DecodeMergedSteps(sealed(b), d, guide).ok());
    b = p;
    b.resize(body + 15);
    CHECK(!DecodeMergedSteps(sealed(b), d, guide).ok());
    // Version 2's bytes are not version 3's.
    auto v2 = EncodeMergedSteps(steps, d, 2);
    REQUIRE(v2.ok());
    b = *v2;
    b[5] = 3;
    CHECK(!DecodeMergedSteps(sealed(b), d, guide).ok());
  }
}

}  // namespace
}  // namespace frugal
