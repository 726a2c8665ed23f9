// Merged format version 4 (EncodeMergedStepsV4 / DecodeMergedStepsV4): each
// step's positions coded given its own round's support, rebuilt from the
// client's kept steps (privacy::StepSupportsFromHistory). Checked against the
// plain reference that applies the steps one at a time, and against supports
// derived from the wrong round or the wrong history.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/frame.h"
#include "frugal/core/random.h"
#include "frugal/privacy/secure_pipeline.h"

namespace frugal {
namespace {
using codec_test::Contains;
using codec_test::ErrorMessage;

constexpr uint32_t kDim = 20000;
constexpr double kDensity = 0.02;

privacy::SecurePipelineConfig Plan() {
  privacy::SecurePipelineConfig cfg;
  cfg.support_seed = 77;
  cfg.guided = 0.01;
  cfg.guide_rounds = 3;
  cfg.guide_decay = 0.9;
  cfg.guide_block = 4;
  return cfg;
}

// Steps as the guided secure pipeline makes them: round r's step is a ternary
// pick of most of round r's support (rebuilt from the steps before it, as the
// engine does) plus a few entries off it (the server's error feedback).
struct Run {
  std::vector<SparseUpdate> steps;
  std::vector<uint32_t> rounds;
};

Run SecureSteps(size_t count, uint64_t seed) {
  const privacy::SecurePipelineConfig cfg = Plan();
  Run run;
  Rng rng(seed);
  uint32_t round = 3;
  for (size_t t = 0; t < count; ++t) {
    round += 1 + static_cast<uint32_t>(rng.NextU64() % 3);  // rounds without quorum make no step
    SparseUpdate step;
    step.dim = kDim;
    std::vector<uint32_t> support;
    if (run.steps.size() >= cfg.guide_rounds) {
      auto s = privacy::StepSupportsFromHistory(run.steps, cfg, kDensity, kDim)(round, {});
      REQUIRE(s.ok());
      support = s->support;
    } else {
      for (uint32_t i = 0; i < kDim; i += 50) support.push_back(i + static_cast<uint32_t>(t));
    }
    std::vector<uint32_t> picked;
    for (uint32_t i : support) {
      if (rng.NextU64() % 4 != 0) picked.push_back(i);
    }
    for (int k = 0; k < 5; ++k) picked.push_back(static_cast<uint32_t>(rng.NextU64() % kDim));
    std::sort(picked.begin(), picked.end());
    picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
    const float mu = 0.001f * static_cast<float>(1 + t);
    for (uint32_t i : picked) {
      step.indices.push_back(i);
      step.values.push_back(rng.NextU64() % 2 ? mu : -mu);
    }
    run.steps.push_back(std::move(step));
    run.rounds.push_back(round);
  }
  return run;
}

bool SameSteps(std::span<const SparseUpdate> a, std::span<const SparseUpdate> b) {
  if (a.size() != b.size()) return false;
  for (size_t t = 0; t < a.size(); ++t) {
    if (a[t].dim != b[t].dim || a[t].indices != b[t].indices || a[t].values.size() != b[t].values.size()) return false;
    if (std::memcmp(a[t].values.data(), b[t].values.data(), 4 * a[t].values.size()) != 0) return false;
  }
  return true;
}

std::vector<float> ApplyOneByOne(std::vector<float> model, std::span<const SparseUpdate> steps) {
  for (const SparseUpdate& s : steps) {
    for (size_t j = 0; j < s.indices.size(); ++j) model[s.indices[j]] += s.values[j];
  }
  return model;
}

TEST_SUITE("codec") {
  TEST_CASE("merged steps version 4 decode to exactly the missed steps and rounds, and applied in order give the chain's model bit for bit") {
    const privacy::SecurePipelineConfig cfg = Plan();
    const Run run = SecureSteps(16, 5);
    const size_t kept = 4;  // the client holds steps 0..3 (its history), missed the rest
    for (size_t missed : {1, 2, 5, 12}) {
      CAPTURE(missed);
      const std::span<const SparseUpdate> history = std::span(run.steps).first(kept);
      const std::span<const SparseUpdate> steps = std::span(run.steps).subspan(kept, missed);
      const std::span<const uint32_t> rounds = std::span(run.rounds).subspan(kept, missed);
      auto v4 = EncodeMergedStepsV4(steps, rounds, kDim, privacy::StepSupportsFromHistory(history, cfg, kDensity, kDim));
      REQUIRE_MESSAGE(v4.ok(), ErrorMessage(v4));
      auto back = DecodeMergedStepsV4(*v4, kDim, privacy::StepSupportsFromHistory(history, cfg, kDensity, kDim));
      REQUIRE_MESSAGE(back.ok(), ErrorMessage(back));
      CHECK(SameSteps(back->steps, steps));
      CHECK(std::equal(back->rounds.begin(), back->rounds.end(), rounds.begin(), rounds.end()));
      const std::vector<float> base(kDim, 0.25f);
      const std::vector<float> want = ApplyOneByOne(base, steps);
      const std::vector<float> got = ApplyOneByOne(base, back->steps);
      CHECK(std::memcmp(want.data(), got.data(), 4 * kDim) == 0);
      auto v2 = EncodeMergedSteps(steps, kDim, 2);
      REQUIRE(v2.ok());
      // Steps mostly on their round's support: positions given the support cost less.
      if (missed >= 2) CHECK(v4->size() < v2->size());
      MESSAGE("missed " << missed << ": version 2 " << v2->size() << " bytes, version 4 " << v4->size());
      CHECK(MergedStepsVersion(*v4).value() == 4);
    }
  }

  TEST_CASE("merged steps version 4 refuses supports derived from the wrong history or the wrong round") {
    const privacy::SecurePipelineConfig cfg = Plan();
    const Run run = SecureSteps(12, 9);
    const std::span<const SparseUpdate> history = std::span(run.steps).first(4);
    const std::span<const SparseUpdate> steps = std::span(run.steps).subspan(4, 6);
    const std::span<const uint32_t> rounds = std::span(run.rounds).subspan(4, 6);
    auto v4 = EncodeMergedStepsV4(steps, rounds, kDim, privacy::StepSupportsFromHistory(history, cfg, kDensity, kDim));
    REQUIRE(v4.ok());
    // History one step older (the client's kept steps end elsewhere): other guides, other supports.
    auto shifted = DecodeMergedStepsV4(*v4, kDim, privacy::StepSupportsFromHistory(std::span(run.steps).first(3), cfg,
                                                                                     kDensity, kDim));
    CHECK_FALSE(shifted.ok());
    // The right history, another support seed: every rand-k half differs.
    privacy::SecurePipelineConfig other = cfg;
    other.support_seed = 78;
    auto seeded = DecodeMergedStepsV4(*v4, kDim, privacy::StepSupportsFromHistory(history, other, kDensity, kDim));
    CHECK_FALSE(seeded.ok());
    // Supports of the round after each step's.
    const StepSupportFn base = privacy::StepSupportsFromHistory(history, cfg, kDensity, kDim);
    auto next_round = DecodeMergedStepsV4(
        *v4, kDim, [&](uint32_t r, std::span<const SparseUpdate> before) { return base(r + 1, before); });
    CHECK_FALSE(next_round.ok());
    // Too short a history: refused, naming it.
    auto short_history = DecodeMergedStepsV4(*v4, kDim, privacy::StepSupportsFromHistory(std::span(run.steps).first(2),
                                                                                          cfg, kDensity, kDim));
    REQUIRE_FALSE(short_history.ok());
    CHECK(Contains(ErrorMessage(short_history), "steps before it"));
    // The version 1-3 decoder says what version 4 needs.
    auto plain = DecodeMergedSteps(*v4, kDim);
    REQUIRE_FALSE(plain.ok());
    CHECK(Contains(ErrorMessage(plain), "kept steps"));
  }

  TEST_CASE("merged steps version 4 refuses damaged and non-canonical payloads with an error, never a wrong step") {
    const privacy::SecurePipelineConfig cfg = Plan();
    const Run run = SecureSteps(10, 11);
    const std::span<const SparseUpdate> history = std::span(run.steps).first(4);
    const std::span<const SparseUpdate> steps = std::span(run.steps).subspan(4, 4);
    const std::span<const uint32_t> rounds = std::span(run.rounds).subspan(4, 4);
    const StepSupportFn fn = privacy::StepSupportsFromHistory(history, cfg, kDensity, kDim);
    auto v4 = EncodeMergedStepsV4(steps, rounds, kDim, fn);
    REQUIRE(v4.ok());
    for (size_t cut : {size_t{0}, size_t{5}, v4->size() / 2, v4->size() - 1}) {
      CHECK_FALSE(DecodeMergedStepsV4(std::span(*v4).first(cut), kDim, fn).ok());
    }
    CHECK_FALSE(DecodeMergedStepsV4(*v4, kDim + 1, fn).ok());
    Rng rng(3);
    for (int k = 0; k < 200; ++k) {
      std::vector<uint8_t> bad = *v4;
      const size_t at = 16 + rng.NextU64() % (bad.size() - 16);  // past the frame header (its CRC would catch it)
      bad[at] ^= static_cast<uint8_t>(1u << (rng.NextU64() % 8));
      auto back = DecodeMergedStepsV4(bad, kDim, fn);
      if (back.ok()) CHECK(SameSteps(back->steps, steps));
    }
    // Rounds must ascend; a step must exist.
    std::vector<uint32_t> flat(rounds.begin(), rounds.end());
    flat[2] = flat[1];
    CHECK(Contains(ErrorMessage(EncodeMergedStepsV4(steps, flat, kDim, fn)), "strictly ascending"));
    CHECK_FALSE(EncodeMergedStepsV4({}, {}, kDim, fn).ok());
    CHECK(Contains(ErrorMessage(EncodeMergedSteps(steps, kDim, 4)), "EncodeMergedStepsV4"));
  }
}

}  // namespace
}  // namespace frugal
