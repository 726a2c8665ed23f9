// The secure pipeline's codec: the shared random support and the ring
// quantization, each against a plain reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "frugal/codec/ring_quant.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {

TEST_SUITE("secure_codec") {

TEST_CASE("the shared support is k sorted distinct coordinates in range, fixed by the seed alone") {
  for (size_t dim : {1u, 2u, 7u, 100u, 101770u}) {
    for (double density : {0.01, 0.1, 0.5, 1.0}) {
      auto s = SharedSupport(42, dim, density);
      REQUIRE(s.ok());
      CHECK(s->size() == UplinkKeepCount(density, dim));
      CHECK(std::is_sorted(s->begin(), s->end()));
      CHECK(std::adjacent_find(s->begin(), s->end()) == s->end());
      CHECK(s->back() < dim);
      auto again = SharedSupport(42, dim, density);
      CHECK(*again == *s);
    }
  }
  // A different seed gives a different set; the round seed differs per round.
  CHECK(*SharedSupport(1, 10000, 0.01) != *SharedSupport(2, 10000, 0.01));
  CHECK(SharedSupportSeed(7, 1) != SharedSupportSeed(7, 2));
  CHECK(SharedSupportSeed(7, 1) == SharedSupportSeed(7, 1));
}

TEST_CASE("the shared support's bits are pinned: the same set on every platform") {
  // Known answer computed once with this code; Rng's integer draws are exact.
  auto s = SharedSupportOfSize(2026, 1000, 8);
  REQUIRE(s.ok());
  // Plain reference: Floyd's algorithm written out with a std::set.
  Rng rng(DeriveSeed(2026, 0x5348415245445355ULL));
  std::set<uint32_t> ref;
  for (size_t j = 1000 - 8; j < 1000; ++j) {
    const auto t = static_cast<uint32_t>(rng.UniformInt(j + 1));
    if (!ref.insert(t).second) ref.insert(static_cast<uint32_t>(j));
  }
  CHECK(std::vector<uint32_t>(ref.begin(), ref.end()) == *s);
}

TEST_CASE("every coordinate is about equally likely to be on the support") {
  // 4,000 supports of 10 of 100: each coordinate expected 400 times; chi-square
  // with 99 degrees of freedom stays below 160 (p < 1e-4) for a uniform sampler.
  const size_t dim = 100, k = 10, trials = 4000;
  std::vector<double> counts(dim, 0);
  for (uint64_t seed = 0; seed < trials; ++seed) {
    const std::vector<uint32_t> s = *SharedSupportOfSize(seed, dim, k);
    for (uint32_t i : s) counts[i] += 1;
  }
  const double expected = static_cast<double>(trials * k) / dim;
  double chi2 = 0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  CHECK(chi2 < 160);
  // and not degenerate: the last coordinates (Floyd's j) are not favoured.
  CHECK(counts[dim - 1] < expected * 1.3);
}

TEST_CASE("bad support arguments are refused with the reason") {
  CHECK(SharedSupport(1, 0, 0.1).error().message().find("dimension") != std::string::npos);
  CHECK(!SharedSupport(1, 10, 0.0).ok());
  CHECK(!SharedSupport(1, 10, 1.5).ok());
  CHECK(!SharedSupportOfSize(1, 10, 11).ok());
  CHECK(!SharedSupportOfSize(1, 10, 0).ok());
}

TEST_CASE("a guided support is the guide plus a uniform draw from the rest, fixed by the seed and the guide") {
  const size_t dim = 200, k = 30;
  const std::vector<uint32_t> guide = {3, 17, 18, 50, 199};
  auto s = GuidedSupport(9, dim, k, guide);
  REQUIRE(s.ok());
  CHECK(s->size() == k);
  CHECK(std::is_sorted(s->begin(), s->end()));
  CHECK(std::adjacent_find(s->begin(), s->end()) == s->end());
  CHECK(std::includes(s->begin(), s->end(), guide.begin(), guide.end()));
  CHECK(*GuidedSupport(9, dim, k, guide) == *s);
  CHECK(*GuidedSupport(10, dim, k, guide) != *s);
  // Plain reference of the explored part: Floyd's draw of k - |guide| positions
  // of the complement (listed in order), mapped back to coordinates.
  std::vector<uint32_t> complement;
  for (uint32_t i = 0; i < dim; ++i) {
    if (!std::binary_search(guide.begin(), guide.end(), i)) complement.push_back(i);
  }
  const std::vector<uint32_t> picks = *SharedSupportOfSize(9, complement.size(), k - guide.size());
  std::set<uint32_t> ref(guide.begin(), guide.end());
  for (uint32_t p : picks) ref.insert(complement[p]);
  CHECK(std::vector<uint32_t>(ref.begin(), ref.end()) == *s);
  // No guide: the plain shared support. A full guide: the guide itself.
  CHECK(*GuidedSupport(9, dim, k, {}) == *SharedSupportOfSize(9, dim, k));
  const std::vector<uint32_t> full = *SharedSupportOfSize(4, dim, k);
  CHECK(*GuidedSupport(9, dim, k, full) == full);
  // The explored part is uniform over the complement: 3,000 draws of 5 of the
  // 95 coordinates outside a 5-coordinate guide; chi-square with 94 degrees of
  // freedom stays below 150 (p < 1e-4), and the guide is never drawn twice.
  std::vector<double> counts(100, 0);
  const std::vector<uint32_t> g5 = {0, 1, 2, 3, 4};
  for (uint64_t seed = 0; seed < 3000; ++seed) {
    const std::vector<uint32_t> drawn = *GuidedSupport(seed, 100, 10, g5);
    for (uint32_t i : drawn) counts[i] += 1;
  }
  for (uint32_t i : g5) CHECK(counts[i] == 3000);
  double chi2 = 0;
  for (size_t i = 5; i < 100; ++i) chi2 += (counts[i] - 3000.0 * 5 / 95) * (counts[i] - 3000.0 * 5 / 95) / (3000.0 * 5 / 95);
  CHECK(chi2 < 150);
  // Refusals: a guide longer than the support, unsorted, repeated or out of range.
  CHECK(GuidedSupport(1, 10, 2, std::vector<uint32_t>{1, 2, 3}).error().message().find("guide of 3") !=
        std::string::npos);
  CHECK(!GuidedSupport(1, 10, 5, std::vector<uint32_t>{4, 2}).ok());
  CHECK(!GuidedSupport(1, 10, 5, std::vector<uint32_t>{2, 2}).ok());
  CHECK(!GuidedSupport(1, 10, 5, std::vector<uint32_t>{10}).ok());
  CHECK(!GuidedSupport(1, 10, 0, {}).ok());
}

TEST_CASE("the top-score coordinates match a full sort, ties to the lower index, zeros never chosen") {
  Rng rng(12);
  for (int trial = 0; trial < 50; ++trial) {
    const size_t dim = 1 + rng.UniformInt(300);
    std::vector<float> score(dim);
    // Few distinct values, so ties are common; about a third are zero.
    for (auto& v : score) v = static_cast<float>(rng.UniformInt(6)) * 0.5f - 0.5f;
    const size_t m = rng.UniformInt(dim + 5);
    std::vector<uint32_t> order(dim);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
    std::vector<uint32_t> ref;
    for (uint32_t i : order) {
      if (ref.size() == m || !(score[i] > 0)) break;
      ref.push_back(i);
    }
    std::sort(ref.begin(), ref.end());
    CHECK(TopScoreCoordinates(score, m) == ref);
  }
}

TEST_CASE("a support guide round-trips through its encoding, and bad bytes are refused with the reason") {
  const uint32_t dim = 199210;
  for (uint32_t block : {1u, 16u}) {
    const uint32_t nblocks = (dim + block - 1) / block;
    const std::vector<uint32_t> blocks = *SharedSupportOfSize(5 + block, nblocks, 4000 / block);
    auto bytes = EncodeSupportGuide(blocks, dim, block);
    REQUIRE(bytes.ok());
    CHECK(bytes->size() < blocks.size());  // under a byte a block, not 4
    // Plain reference of the expansion: every coordinate whose block is listed.
    std::vector<uint32_t> coords;
    for (uint32_t i = 0; i < dim; ++i) {
      if (std::binary_search(blocks.begin(), blocks.end(), i / block)) coords.push_back(i);
    }
    CHECK(*DecodeSupportGuide(*bytes, dim, 4000) == coords);
    CHECK(ExpandGuideBlocks(blocks, dim, block) == coords);
    CHECK(DecodeSupportGuide(*bytes, dim, static_cast<uint32_t>(coords.size()) - 1).error().message().find(
              "support") != std::string::npos);
    std::vector<uint8_t> cut(bytes->begin(), bytes->end() - 1);
    CHECK(!DecodeSupportGuide(cut, dim, 4000).ok());
    std::vector<uint8_t> longer = *bytes;
    longer.push_back(0);
    CHECK(!DecodeSupportGuide(longer, dim, 4000).ok());
    std::vector<uint8_t> bad_b = *bytes;
    bad_b[6] = 31;
    CHECK(DecodeSupportGuide(bad_b, dim, 4000).error().message().find("Rice parameter") != std::string::npos);
    std::vector<uint8_t> flag = *bytes;
    flag[7] = 2;
    CHECK(!DecodeSupportGuide(flag, dim, 4000).ok());
    CHECK(!DecodeSupportGuide(*bytes, 1000, 4000).ok());  // blocks beyond a smaller model
  }
  // The last block of a model that is not a whole number of blocks is short.
  CHECK(ExpandGuideBlocks(std::vector<uint32_t>{0, 2}, 10, 4) == std::vector<uint32_t>{0, 1, 2, 3, 8, 9});
  auto empty = EncodeSupportGuide({}, dim, 16);
  REQUIRE(empty.ok());
  CHECK(empty->size() == 8);
  CHECK(DecodeSupportGuide(*empty, dim, 10)->empty());
  std::vector<uint8_t> zero_block = *empty;
  zero_block[4] = 0;
  CHECK(DecodeSupportGuide(zero_block, dim, 10).error().message().find("block size 0") != std::string::npos);
  CHECK(!DecodeSupportGuide(std::vector<uint8_t>(7, 0), dim, 4000).ok());
  CHECK(!EncodeSupportGuide(std::vector<uint32_t>{5, 5}, dim, 1).ok());
  CHECK(!EncodeSupportGuide(std::vector<uint32_t>{5}, dim, 0).ok());
}

TEST_CASE("ring quantization is unbiased, keeps the rest in the residual, and the sum decodes exactly") {
  const RingQuantConfig cfg{.bits = 24, .clip = 0.5f, .max_summands = 16};
  REQUIRE(ValidateRingQuantConfig(cfg).ok());
  const size_t d = 200;
  auto support = *SharedSupport(9, d, 0.2);
  Rng rng(5);
  const int clients = 10;
  std::vector<int64_t> level_sum(support.size(), 0);
  std::vector<uint64_t> ring_sum(support.size(), 0);
  const uint64_t mask = (uint64_t{1} << cfg.bits) - 1;
  const double scale = RingScale(cfg);
  for (int c = 0; c < clients; ++c) {
    std::vector<float> update(d), residual(d);
    for (auto& v : update) v = static_cast<float>(rng.Normal() * 0.3);
    for (auto& v : residual) v = static_cast<float>(rng.Normal() * 0.05);
    const std::vector<float> acc = [&] {
      std::vector<float> a(d);
      for (size_t i = 0; i < d; ++i) a[i] = update[i] + residual[i];
      return a;
    }();
    auto q = RingQuantize(update, support, cfg, 100 + c, residual);
    REQUIRE(q.ok());
    REQUIRE(q->size() == support.size());
    size_t j = 0;
    for (size_t i = 0; i < d; ++i) {
      if (j < support.size() && support[j] == i) {
        // Plain reference: the level is floor or ceil of the clipped, scaled value.
        const uint64_t e = (*q)[j];
        const int64_t level = e >= (mask >> 1) + 1 ? static_cast<int64_t>(e) - static_cast<int64_t>(mask) - 1
                                                    : static_cast<int64_t>(e);
        const double x = std::clamp(static_cast<double>(acc[i]), -0.5, 0.5) * scale;
        CHECK(static_cast<double>(level) >= std::floor(x) - 1e-9);
        CHECK(static_cast<double>(level) <= std::ceil(x) + 1e-9);
        // error feedback: sent + residual is the accumulated value
        CHECK(static_cast<double>(level) / scale + residual[i] == doctest::Approx(acc[i]).epsilon(1e-5));
        level_sum[j] += level;
        ring_sum[j] = (ring_sum[j] + e) & mask;
        ++j;
      } else {
        CHECK(residual[i] == acc[i]);  // off the support nothing was sent
      }
    }
  }
  auto decoded = RingDecodeSum(ring_sum, clients, cfg);
  REQUIRE(decoded.ok());
  for (size_t j = 0; j < support.size(); ++j) CHECK((*decoded)[j] == static_cast<double>(level_sum[j]) / scale);
}

TEST_CASE("stochastic rounding is unbiased on average") {
  const RingQuantConfig cfg{.bits = 16, .clip = 1.0f, .max_summands = 1024};  // 31 levels per unit
  const std::vector<float> update = {0.3f};
  const std::vector<uint32_t> support = {0};
  double mean = 0;
  const int n = 20000;
  for (int s = 0; s < n; ++s) {
    auto q = RingQuantize(update, support, cfg, s, {});
    auto v = RingDecodeSum(*q, 1, cfg);
    mean += (*v)[0];
  }
  CHECK(mean / n == doctest::Approx(0.3).epsilon(0.01));
}

TEST_CASE("a ring sum beyond the headroom is refused, never wrapped") {
  const RingQuantConfig cfg{.bits = 16, .clip = 1.0f, .max_summands = 4};
  const int64_t m = RingMaxLevel(cfg);
  CHECK(m == 8191);
  std::vector<uint64_t> ok_sum = {static_cast<uint64_t>(4 * m)};
  CHECK(RingDecodeSum(ok_sum, 4, cfg).ok());
  CHECK(RingDecodeSum(ok_sum, 3, cfg).error().code() == ErrorCode::kDataLoss);  // 3 clients cannot reach 4m
  CHECK(RingDecodeSum(ok_sum, 5, cfg).error().code() == ErrorCode::kFailedPrecondition);
  CHECK(!ValidateRingQuantConfig({.bits = 3}).ok());
  // 6 bits hold 3 levels for each of 10 clients; 5 bits 1 (ternary: 10 clients'
  // +-1 fit in +-15); 4 bits none (+-7 cannot hold 10 clients' +-1).
  CHECK(ValidateRingQuantConfig({.bits = 6, .clip = 0.1f, .max_summands = 10}).ok());
  CHECK(RingMaxLevel({.bits = 6, .clip = 0.1f, .max_summands = 10}) == 3);
  CHECK(ValidateRingQuantConfig({.bits = 5, .clip = 0.1f, .max_summands = 10}).ok());
  CHECK(RingMaxLevel({.bits = 5, .clip = 0.1f, .max_summands = 10}) == 1);
  CHECK(!ValidateRingQuantConfig({.bits = 4, .clip = 0.1f, .max_summands = 10}).ok());
  CHECK(ValidateRingQuantConfig({.bits = 4, .clip = 0.1f, .max_summands = 7}).ok());
  CHECK(!ValidateRingQuantConfig({.bits = 16, .clip = 0.0f}).ok());
  CHECK(ValidateRingQuantConfig({.bits = 8, .clip = 1.0f, .max_summands = 127}).ok());   // 1 level each
  CHECK(!ValidateRingQuantConfig({.bits = 8, .clip = 1.0f, .max_summands = 128}).ok());  // none
  std::vector<float> nan_update = {NAN};
  std::vector<uint32_t> support = {0};
  CHECK(!RingQuantize(nan_update, support, cfg, 1, {}).ok());
  std::vector<uint32_t> bad_support = {1};
  CHECK(!RingQuantize(std::vector<float>{0.1f}, bad_support, cfg, 1, {}).ok());
}

TEST_CASE("modular clipping decodes more clients than the ring holds as the centered residue, and counts the wraps") {
  // A 4-bit ring with headroom for 7 clients at one level each (ternary
  // values), summed over 10 clients: a true sum in [-8, 7] decodes exactly,
  // one outside comes back as its centered residue mod 16, and the wrap
  // counter counts exactly those entries, against a plain reference loop.
  const RingQuantConfig cfg{.bits = 4, .clip = 0.04f, .max_summands = 7, .modular = true};
  REQUIRE(ValidateRingQuantConfig(cfg).ok());
  REQUIRE(RingMaxLevel(cfg) == 1);
  const double scale = RingScale(cfg);
  const int clients = 10;
  const size_t n = 2000;
  Rng rng(17);
  std::vector<std::vector<uint64_t>> inputs(clients, std::vector<uint64_t>(n));
  std::vector<int64_t> truth(n, 0);
  for (size_t j = 0; j < n; ++j) {
    // Every fifth entry leans to +1 and the next to -1 (each client agrees
    // with probability 0.9), so that sums reach +-8..10; the rest are uniform
    // in {-1, 0, 1}.
    const int64_t lean = j % 5 == 0 ? 1 : (j % 5 == 1 ? -1 : 0);
    for (int c = 0; c < clients; ++c) {
      const int64_t level = lean != 0 ? (rng.Uniform() < 0.9 ? lean : 0)
                                      : static_cast<int64_t>(std::floor(rng.Uniform() * 3)) - 1;
      truth[j] += level;
      inputs[c][j] = static_cast<uint64_t>(level) & 15;
    }
  }
  std::vector<uint64_t> ring_sum(n, 0);
  for (const auto& in : inputs) {
    for (size_t j = 0; j < n; ++j) ring_sum[j] = (ring_sum[j] + in[j]) & 15;
  }
  auto decoded = RingDecodeSum(ring_sum, clients, cfg);
  REQUIRE(decoded.ok());
  uint64_t outside = 0, outside3 = 0, hi = 0, lo = 0;
  for (size_t j = 0; j < n; ++j) {
    const int64_t t = truth[j];
    // Plain reference: the centered residue of t mod 16.
    int64_t residue = ((t % 16) + 16) % 16;
    if (residue >= 8) residue -= 16;
    CHECK((*decoded)[j] == static_cast<double>(residue) / scale);
    if (t >= -8 && t <= 7) {
      CHECK((*decoded)[j] == static_cast<double>(t) / scale);  // inside the range: exact
    } else {
      ++outside;
      CHECK((*decoded)[j] != static_cast<double>(t) / scale);  // outside: wrapped by 16 levels
      CHECK(std::abs(static_cast<double>(t - residue)) == 16.0);
      (t > 0 ? hi : lo) += 1;
    }
    if (t < -4 || t > 3) ++outside3;
  }
  REQUIRE(hi > 0);  // the data reaches both ends, so the test sees wraps
  REQUIRE(lo > 0);
  auto counter = RingWrapCounter::Create(4, n);
  REQUIRE(counter.ok());
  for (const auto& in : inputs) REQUIRE(counter->Add(in).ok());
  const RingWrapCount count = counter->Count();
  CHECK(count.entries == n);
  CHECK(count.wrapped == outside);
  CHECK(count.wrapped_one_bit_less == outside3);
  // Over a subset of the entries (the leaning-to-+1 ones): the reference's count there.
  std::vector<uint8_t> only(n, 0);
  uint64_t subset_entries = 0, subset_wrapped = 0;
  for (size_t j = 0; j < n; j += 5) {
    only[j] = 1;
    ++subset_entries;
    subset_wrapped += truth[j] > 7 ? 1 : 0;
  }
  auto subset = counter->Count(only);
  REQUIRE(subset.ok());
  CHECK(subset->entries == subset_entries);
  CHECK(subset->wrapped == subset_wrapped);
  CHECK(!counter->Count(std::vector<uint8_t>(n - 1, 1)).ok());
  // A run's totals: the counts added field by field.
  RingWrapCount total = count;
  total += *subset;
  CHECK(total.entries == n + subset_entries);
  CHECK(total.wrapped == outside + subset_wrapped);
  CHECK(total.wrapped_one_bit_less == outside3 + subset->wrapped_one_bit_less);
  // Without modular clipping the same sum is refused, never wrapped.
  RingQuantConfig strict = cfg;
  strict.modular = false;
  CHECK(RingDecodeSum(ring_sum, clients, strict).error().code() == ErrorCode::kFailedPrecondition);
  // With no more clients than the headroom, modular clipping keeps the bound check.
  CHECK(RingDecodeSum(std::vector<uint64_t>{7}, 3, cfg).error().code() == ErrorCode::kDataLoss);
  CHECK(RingDecodeSum(std::vector<uint64_t>{3}, 3, cfg).ok());
}

TEST_CASE("the wrap counter refuses inputs it cannot read, and modular clipping refuses distributed DP noise") {
  CHECK(!RingWrapCounter::Create(1, 4).ok());
  CHECK(!RingWrapCounter::Create(63, 4).ok());
  auto counter = RingWrapCounter::Create(5, 2);
  REQUIRE(counter.ok());
  CHECK(counter->Add(std::vector<uint64_t>{1, 2, 3}).error().code() == ErrorCode::kInvalidArgument);
  CHECK(counter->Add(std::vector<uint64_t>{1, 32}).error().message().find("outside Z_2^5") != std::string::npos);
  // No wrap below the range: 5 bits hold [-16, 15]; 16 clients at +1 leave it, 15 do not.
  for (int c = 0; c < 15; ++c) REQUIRE(counter->Add(std::vector<uint64_t>{1, 31}).ok());
  CHECK(counter->Count().wrapped == 0);
  CHECK(counter->Count().wrapped_one_bit_less == 2);  // 15 > 7 and -15 < -8
  REQUIRE(counter->Add(std::vector<uint64_t>{1, 31}).ok());
  CHECK(counter->Count().wrapped == 1);  // +16 wraps, -16 does not
  const auto noisy = ValidateRingQuantConfig({.bits = 32, .clip = 0.1f, .max_summands = 7, .noise_mu = 4, .modular = true});
  REQUIRE(!noisy.ok());
  CHECK(noisy.error().message().find("modular_clip") != std::string::npos);
}

TEST_CASE("ring packing round-trips at every width and refuses wrong sizes and padding") {
  Rng rng(3);
  for (int bits : {1, 7, 8, 13, 16, 24, 31, 32, 48, 62, 64}) {
    for (size_t n : {0u, 1u, 5u, 64u}) {
      std::vector<uint64_t> v(n);
      const uint64_t mask = bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1;
      for (auto& x : v) x = rng.NextU64() & mask;
      auto packed = PackRing(v, bits);
      CHECK(packed.size() == (n * bits + 7) / 8);
      auto back = UnpackRing(packed, n, bits);
      REQUIRE(back.ok());
      CHECK(*back == v);
      if (!packed.empty()) {
        auto shorter = packed;
        shorter.pop_back();
        CHECK(!UnpackRing(shorter, n, bits).ok());
        if ((n * bits) % 8 != 0) {
          auto padded = packed;
          padded.back() |= 0x80;
          CHECK(!UnpackRing(padded, n, bits).ok());
        }
      }
    }
  }
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal
