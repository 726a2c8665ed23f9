// Central DP-FedAvg (frugal/privacy/dp.h) and its place in the round engine:
// clipping and the noised mean against a plain loop, the noise's variance, ε
// against the standalone accountant, adaptive clipping's convergence, a
// restart that continues bit for bit, the target-ε stop, the [privacy]
// settings' refusals, and the Skellam accounting against the exact divergence.
// Updates are synthetic vectors: these properties hold for any update, and
// the simulator test (privacy_target_epsilon_sim) runs the real data.
#include "frugal/privacy/dp.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/random.h"
#include "frugal/privacy/accountant.h"
#include "frugal/privacy/noise.h"
#include "frugal/codec/ring_quant.h"
#include "frugal/round/engine.h"
#include "frugal/round/settings.h"

namespace frugal::privacy {
namespace {

SparseUpdate Dense(std::vector<float> v) {
  SparseUpdate u;
  u.dim = static_cast<uint32_t>(v.size());
  for (uint32_t i = 0; i < v.size(); ++i) u.indices.push_back(i);
  u.values = std::move(v);
  return u;
}

std::vector<float> Gaussian(size_t n, uint64_t seed, double scale) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal() * scale);
  return v;
}

DpConfig Central(double clip, double z, uint32_t expected) {
  DpConfig c;
  c.mode = DpMode::kCentral;
  c.clip = clip;
  c.noise_multiplier = z;
  c.expected_clients = expected;
  c.noise_seed = 424242;
  return c;
}

// Rényi divergence D_α(P || Q) of the Skellam Sk(μ, μ) against itself shifted
// by one, by summing the pmf (a convolution of two Poisson pmfs) directly.
double ExactSkellamDivergence(double mu, double alpha) {
  const int range = static_cast<int>(mu + 60 * std::sqrt(mu) + 60);
  std::vector<double> pois(2 * range + 1);
  for (int j = 0; j <= 2 * range; ++j) pois[j] = std::exp(j * std::log(mu) - mu - std::lgamma(j + 1.0));
  auto pmf = [&](int k) {  // P(X - Y = k)
    double p = 0;
    for (int j = std::max(0, k); j <= 2 * range && j - k <= 2 * range; ++j) p += pois[j] * pois[j - k];
    return p;
  };
  double sum = 0;
  for (int k = -range; k <= range; ++k) {
    const double p = pmf(k), q = pmf(k - 1);
    if (p > 0 && q > 0) sum += std::exp(alpha * std::log(p) + (1 - alpha) * std::log(q));
  }
  return std::log(sum) / (alpha - 1);
}

}  // namespace

TEST_SUITE("privacy") {
  TEST_CASE("ClipL2 scales a vector to the bound exactly as a plain loop, and leaves shorter ones alone") {
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      std::vector<float> v = Gaussian(257, seed, seed % 3 == 0 ? 0.01 : 1.0);
      const double clip = 0.5;
      double sq = 0;
      for (float x : v) sq += double(x) * x;
      const double norm = std::sqrt(sq);
      std::vector<float> want = v;
      if (norm > clip) {
        for (float& x : want) x = static_cast<float>(x * (clip / norm));
      }
      CHECK(ClipL2(v, clip) == doctest::Approx(norm).epsilon(1e-12));
      CHECK(v == want);
      double after = 0;
      for (float x : v) after += double(x) * x;
      CHECK(std::sqrt(after) <= clip * (1 + 1e-6));
    }
  }

  TEST_CASE("the DP mean is the sum of clipped updates plus seeded noise over the expected count, as a plain loop") {
    const size_t d = 300;
    const uint32_t expected = 8;  // more than the 5 that arrive: the denominator stays fixed
    DpConfig cfg = Central(0.7, 1.3, expected);
    CentralDp dp(cfg);
    std::vector<SparseUpdate> updates;
    for (uint64_t c = 0; c < 5; ++c) updates.push_back(Dense(Gaussian(d, 100 + c, c % 2 ? 0.01 : 1.0)));
    // A sparse one too: only its coordinates receive it.
    SparseUpdate sparse;
    sparse.dim = d;
    sparse.indices = {3, 50, 299};
    sparse.values = {2.0f, -1.0f, 0.5f};
    updates.push_back(sparse);
    std::vector<const SparseUpdate*> ptrs;
    for (const auto& u : updates) ptrs.push_back(&u);
    std::vector<float> out(d);
    auto r = dp.Aggregate(7, ptrs, 0.01, out);
    REQUIRE(r.ok());

    std::vector<double> sum(d, 0.0);
    uint32_t clipped = 0;
    for (const auto& u : updates) {
      double sq = 0;
      for (float x : u.values) sq += double(x) * x;
      const double scale = std::sqrt(sq) > cfg.clip ? cfg.clip / std::sqrt(sq) : 1.0;
      clipped += scale < 1;
      for (size_t i = 0; i < u.indices.size(); ++i) sum[u.indices[i]] += static_cast<float>(u.values[i] * scale);
    }
    auto rng = *NoiseStream::Create(SeededNoiseKey(cfg.noise_seed, 0, 7));
    for (size_t j = 0; j < d; ++j) {
      const double want = (sum[j] + cfg.noise_multiplier * cfg.clip * rng.Normal()) / expected;
      CHECK(out[j] == doctest::Approx(want).epsilon(1e-6));
    }
    CHECK(r->clipped == clipped);
    CHECK(r->noise_stddev == doctest::Approx(1.3 * 0.7));
    CHECK(r->clip == 0.7);
    CHECK(r->next_clip == 0.7);  // fixed clip
  }

  TEST_CASE("the streamed sum equals the old path (a double sum in client order) bit for bit, in any order") {
    // The old CloseRound kept every decoded update and summed the clipped
    // values in double in client-id order; the streamed sum is exact fixed
    // point rounded once. On updates whose values span less than 2^29 (so the
    // double sum was exact too) the two agree exactly; any order gives the same bits.
    const size_t d = 500;
    DpConfig cfg = Central(0.9, 1.1, 30);
    std::vector<SparseUpdate> updates;
    for (uint64_t c = 0; c < 30; ++c) updates.push_back(Dense(Gaussian(d, 900 + c, c % 3 ? 0.02 : 0.5)));
    std::vector<double> sum(d, 0.0);
    for (const auto& u : updates) {
      std::vector<float> v = u.values;
      ClipL2(v, cfg.clip);
      for (size_t i = 0; i < d; ++i) sum[i] += v[i];
    }
    auto rng = *NoiseStream::Create(SeededNoiseKey(cfg.noise_seed, 0, 3));
    std::vector<float> want(d);
    for (size_t j = 0; j < d; ++j) {
      want[j] = static_cast<float>((sum[j] + cfg.noise_multiplier * cfg.clip * rng.Normal()) / 30);
    }
    Rng shuffle(5);
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<const SparseUpdate*> ptrs;
      for (const auto& u : updates) ptrs.push_back(&u);
      if (trial > 0) {
        for (size_t i = ptrs.size() - 1; i > 0; --i) std::swap(ptrs[i], ptrs[shuffle.UniformInt(i + 1)]);
      }
      CentralDp dp(cfg);
      dp.BeginRound(d);
      for (const SparseUpdate* u : ptrs) REQUIRE(dp.Accumulate(*u).ok());
      CHECK(dp.accumulated() == 30);
      std::vector<float> out(d);
      REQUIRE(dp.FinishRound(3, 0.5, out).ok());
      CHECK(out == want);
    }
    // A wrong dimension is refused and adds nothing.
    CentralDp dp(cfg);
    dp.BeginRound(d);
    CHECK_FALSE(dp.Accumulate(Dense(std::vector<float>(d + 1, 0.1f))).ok());
    CHECK(dp.accumulated() == 0);
    // Where a double sum depends on order (0.5 + 2^-60 - 0.5 is 0 in double,
    // 2^-60 in any other order) the running sum is exact in every order.
    const std::vector<std::vector<float>> parts = {{0.5f}, {0x1.0p-60f}, {-0.5f}};
    for (const auto& order : std::vector<std::vector<int>>{{0, 1, 2}, {1, 0, 2}, {0, 2, 1}, {2, 1, 0}}) {
      CentralDp exact(Central(0.9, 1.0, 3));
      exact.BeginRound(1);
      for (int k : order) REQUIRE(exact.Accumulate(Dense(parts[k])).ok());
      CHECK(exact.RunningSum(0) == 0x1.0p-60);
    }
  }

  TEST_CASE("a DP engine gives the same model bits whatever order the updates arrive in") {
    const size_t d = 200;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.full_model.bits = 0;
    cfg.dp = Central(0.05, 0.8, 12);
    UplinkConfig up;
    up.dense = true;
    std::vector<std::vector<uint8_t>> encoded;
    // Values over twelve orders of magnitude, beyond what a double sum holds exactly.
    for (uint64_t c = 1; c <= 12; ++c) {
      encoded.push_back(*EncodeUplink(Gaussian(d, 70 + c, std::pow(10.0, -2.0 * double(c % 7))), up, {}));
    }
    std::vector<std::vector<float>> models;
    for (bool reversed : {false, true}) {
      RoundEngine e(Gaussian(d, 1, 0.1), cfg);
      std::vector<uint64_t> ids;
      for (uint64_t c = 1; c <= 12; ++c) ids.push_back(c);
      REQUIRE(e.OpenRound(1, ids).ok());
      for (size_t k = 0; k < ids.size(); ++k) {
        const size_t i = reversed ? ids.size() - 1 - k : k;
        REQUIRE(e.Ingest(1, ids[i], e.version(), encoded[i], 1.0).ok());
      }
      auto out = e.CloseRound(1);
      REQUIRE(out.ok());
      CHECK(out->accepted == 12);
      models.emplace_back(e.global_model().begin(), e.global_model().end());
    }
    CHECK(std::memcmp(models[0].data(), models[1].data(), 4 * d) == 0);
  }

  TEST_CASE("the noise added to the sum has variance (z C)^2 and mean 0 (seeded, 200,000 coordinates)") {
    const size_t d = 200'000;
    DpConfig cfg = Central(0.5, 1.3, 1);
    CentralDp dp(cfg);
    const SparseUpdate zero = Dense(std::vector<float>(d, 0.0f));
    const SparseUpdate* ptr = &zero;
    std::vector<float> out(d);
    REQUIRE(dp.Aggregate(1, std::span(&ptr, 1), 1.0, out).ok());
    double mean = 0, var = 0;
    for (float x : out) mean += x;
    mean /= d;
    for (float x : out) var += (x - mean) * (x - mean);
    var /= d - 1;
    const double want = 0.65 * 0.65;
    // The sample variance's standard error is want * sqrt(2 / d) = 0.32%: 5 of them.
    CHECK(std::fabs(var / want - 1) < 5 * std::sqrt(2.0 / d));
    CHECK(std::fabs(mean) < 5 * 0.65 / std::sqrt(double(d)));
    // A different round draws different noise.
    std::vector<float> again(d);
    REQUIRE(dp.Aggregate(2, std::span(&ptr, 1), 1.0, again).ok());
    CHECK(again != out);
  }

  TEST_CASE("the noise stream is the AES-256-CTR keystream: AES of counter blocks 0, 1, 2, ... under the key") {
    // Plain reference: AES-256 in ECB mode on each big-endian counter block.
    NoiseKey key{};
    for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(3 * i + 1);
    auto stream = NoiseStream::Create(key);
    REQUIRE(stream.ok());
    EVP_CIPHER_CTX* ecb = EVP_CIPHER_CTX_new();
    REQUIRE(EVP_EncryptInit_ex(ecb, EVP_aes_256_ecb(), nullptr, key.data(), nullptr) == 1);
    EVP_CIPHER_CTX_set_padding(ecb, 0);
    bool same = true;
    for (uint64_t block = 0; block < 700; ++block) {  // past the 4 KiB buffer's refills
      unsigned char counter[16] = {}, out[16];
      for (int b = 0; b < 8; ++b) counter[15 - b] = static_cast<unsigned char>(block >> (8 * b));
      int len = 0;
      REQUIRE(EVP_EncryptUpdate(ecb, out, &len, counter, 16) == 1);
      for (int half = 0; half < 2; ++half) {
        uint64_t want = 0;
        for (int b = 7; b >= 0; --b) want = (want << 8) | out[8 * half + b];
        same = same && stream->NextU64() == want;
      }
    }
    EVP_CIPHER_CTX_free(ecb);
    CHECK(same);
    // The same key repeats the stream; another key or seed does not.
    auto a = NoiseStream::Create(SeededNoiseKey(9, 0, 4)), b = NoiseStream::Create(SeededNoiseKey(9, 0, 4));
    auto c = NoiseStream::Create(SeededNoiseKey(9, 0, 5)), e = NoiseStream::Create(SeededNoiseKey(10, 0, 4));
    const double first = a->Normal();
    CHECK(first == b->Normal());
    CHECK(first != c->Normal());
    CHECK(first != e->Normal());
    CHECK(SeededNoiseKey(9, 1, 4) != SeededNoiseKey(9, 0, 4));
  }

  TEST_CASE("noise stream draws: normal moments, Poisson and Skellam against their pmf and variance") {
    auto s = *NoiseStream::Create(SeededNoiseKey(77, 0, 1));
    const int n = 400'000;
    double m1 = 0, m2 = 0, m4 = 0, u = 0;
    for (int i = 0; i < n; ++i) {
      const double x = s.Normal();
      m1 += x;
      m2 += x * x;
      m4 += x * x * x * x;
      u += s.Uniform();
    }
    m1 /= n, m2 /= n, m4 /= n, u /= n;
    // 5 standard errors: sqrt(1/n), sqrt(2/n), sqrt(96/n), sqrt(1/(12 n)).
    CHECK(std::fabs(m1) < 5 * std::sqrt(1.0 / n));
    CHECK(std::fabs(m2 - 1) < 5 * std::sqrt(2.0 / n));
    CHECK(std::fabs(m4 - 3) < 5 * std::sqrt(96.0 / n));
    CHECK(std::fabs(u - 0.5) < 5 * std::sqrt(1.0 / (12.0 * n)));
    // Poisson: both samplers (below 10: products of uniforms; from 10: PTRS)
    // against the pmf by a chi-square test over bins with >= 5 expected.
    for (double mu : {0.7, 4.0, 12.5, 300.0}) {
      const int draws = 100'000;
      std::map<int64_t, int> counts;
      double mean = 0, var = 0;
      for (int i = 0; i < draws; ++i) {
        const int64_t k = s.Poisson(mu);
        ++counts[k];
        mean += static_cast<double>(k);
        var += static_cast<double>(k) * static_cast<double>(k);
      }
      mean /= draws;
      var = var / draws - mean * mean;
      CAPTURE(mu);
      CHECK(std::fabs(mean - mu) < 5 * std::sqrt(mu / draws));
      CHECK(std::fabs(var / mu - 1) < 5 * std::sqrt((2.0 + 1.0 / mu) / draws));
      double chi2 = 0, tail_expected = 0;
      int bins = 0, tail_count = 0;
      for (int64_t k = 0; k < static_cast<int64_t>(mu + 20 * std::sqrt(mu) + 20); ++k) {
        const double expected = draws * std::exp(k * std::log(mu) - mu - std::lgamma(k + 1.0));
        const int got = counts.contains(k) ? counts[k] : 0;
        if (expected >= 5) {
          chi2 += (got - expected) * (got - expected) / expected;
          ++bins;
        } else {
          tail_expected += expected;
          tail_count += got;
        }
      }
      if (tail_expected > 0) chi2 += (tail_count - tail_expected) * (tail_count - tail_expected) / tail_expected, ++bins;
      // Chi-square with bins - 1 degrees of freedom: mean k, sd sqrt(2k); 6 sd.
      CHECK(chi2 < (bins - 1) + 6 * std::sqrt(2.0 * (bins - 1)));
    }
    double sk = 0, sk2 = 0;
    for (int i = 0; i < 100'000; ++i) {
      const auto k = static_cast<double>(s.Skellam(50.0));
      sk += k;
      sk2 += k * k;
    }
    CHECK(std::fabs(sk / 100'000) < 5 * std::sqrt(100.0 / 100'000));
    CHECK(std::fabs(sk2 / 100'000 / 100.0 - 1) < 5 * std::sqrt(2.0 / 100'000));
  }

  TEST_CASE("Poisson draws: a uniform of exactly 0 is rejected, not divided by; a mean past 2^52 is refused or capped") {
    // A plain generator of uniforms in (0, 1), so the sequences below are known.
    auto lcg = [](uint64_t state) {
      return [state]() mutable {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (static_cast<double>(state >> 11) + 0.5) * 0x1.0p-53;
      };
    };
    for (double mu : {12.5, 300.0, 1e12}) {
      // PTRS: a pair whose first uniform is 0 (us = 0) is rejected, so the next pair decides.
      auto plain = lcg(5);
      std::vector<double> zeros = {0.0, 0.0, 0.0, 0.7};
      size_t used = 0;
      auto leading_zero = lcg(5);
      auto with_zero = [&]() { return used < zeros.size() ? zeros[used++] : leading_zero(); };
      const int64_t want = PoissonFromUniforms(mu, plain);
      CAPTURE(mu);
      CHECK(want >= 0);
      CHECK(PoissonFromUniforms(mu, with_zero) == want);
      CHECK(used == zeros.size());
    }
    // Means near 1e14 and beyond (a 32-bit ring for few clients): the draws keep
    // Poisson's variance (the plain log pmf cancelled terms near 1e16 there:
    // variance 1.5 mu at 4e15). 100,000 draws, 5 standard errors.
    for (double mu : {1e14, 4e15}) {
      std::function<double()> uniform = lcg(11);  // one generator across the calls
      const int n = 100'000;
      double mean = 0, var = 0;
      for (int i = 0; i < n; ++i) {
        const double x = static_cast<double>(PoissonFromUniforms(mu, uniform)) - mu;
        mean += x;
        var += x * x;
      }
      mean /= n;
      var = var / n - mean * mean;
      CAPTURE(mu);
      CHECK(std::fabs(mean) < 5 * std::sqrt(mu / n));
      CHECK(std::fabs(var / mu - 1) < 5 * std::sqrt(2.0 / n));
    }
    // Knuth's product (mu < 10): a first uniform of 0 is already below e^-mu.
    CHECK(PoissonFromUniforms(4.0, [] { return 0.0; }) == 0);
    // A mean past int64 used to loop forever (every candidate overflowed the cast); it is capped.
    auto s = *NoiseStream::Create(SeededNoiseKey(3, 0, 1));
    for (double mu : {1e19, 1e30}) {
      const int64_t k = s.Poisson(mu);
      CHECK(std::fabs(static_cast<double>(k) - kMaxPoissonMean) < 10 * std::sqrt(kMaxPoissonMean));
    }
    // ... and refused, naming what was wrong, where a mean is set: the ring's config and the distributed plan.
    RingQuantConfig huge{.bits = 32, .clip = 0.1f, .max_summands = 4};
    huge.noise_mu = 1e20;
    auto refused = ValidateRingQuantConfig(huge);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message().find("noise_mu") != std::string::npos);
    DpConfig dp;
    dp.mode = DpMode::kDistributed;
    dp.clip = 1;
    dp.noise_multiplier = 1;
    auto wide = PlanDistributedRing(dp, RingQuantConfig{.bits = 62, .clip = 0.1f, .max_summands = 10}, 0.3, 100);
    REQUIRE_FALSE(wide.ok());
    CHECK(wide.error().message().find("secure.bits") != std::string::npos);
    CHECK(PlanDistributedRing(dp, RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 10}, 0.3, 100).ok());
  }

  TEST_CASE("epsilon after T rounds equals the accountant's standalone value for the same q, z, T") {
    DpConfig cfg = Central(1.0, 1.1, 10);
    cfg.delta = 1e-5;
    cfg.sampling = SamplingScheme::kPoisson;
    CentralDp dp(cfg);
    const SparseUpdate u = Dense({0.3f, -0.2f});
    const SparseUpdate* ptr = &u;
    std::vector<float> out(2);
    double eps = 0;
    for (uint32_t t = 1; t <= 25; ++t) {
      auto r = dp.Aggregate(t, std::span(&ptr, 1), 0.05, out);
      REQUIRE(r.ok());
      eps = r->epsilon;
      CHECK(r->delta == 1e-5);
    }
    auto want = SubsampledGaussianEpsilon(0.05, 1.1, 25, 1e-5);
    REQUIRE(want.ok());
    CHECK(std::fabs(eps - want->epsilon) <= 1e-12 * want->epsilon);
    CHECK(dp.rounds() == 25);
    // Changing q mid-run composes as RdpAccountant does.
    RdpAccountant acc;
    REQUIRE(acc.Compose(0.05, 1.1, 25).ok());
    REQUIRE(acc.Compose(0.2, 1.1).ok());
    auto r = dp.Aggregate(26, std::span(&ptr, 1), 0.2, out);
    REQUIRE(r.ok());
    CHECK(std::fabs(r->epsilon - acc.Spent(1e-5)->epsilon) <= 1e-12 * r->epsilon);
  }

  TEST_CASE("adaptive clipping: the update noise and the count noise compose to the accounted z (Andrew et al.)") {
    auto z_update = UpdateNoiseMultiplier(1.0, 5.0);
    REQUIRE(z_update.ok());
    CHECK(1 / (*z_update * *z_update) + 1 / (10.0 * 10.0) == doctest::Approx(1.0).epsilon(1e-12));
    CHECK_FALSE(UpdateNoiseMultiplier(2.0, 1.0).ok());  // 2 σ_b must exceed z
    CHECK(NextClip(2.0, 0.8, 0.5, 0.2) == doctest::Approx(2.0 * std::exp(-0.2 * 0.3)));
  }

  TEST_CASE("adaptive clipping converges toward the target quantile of a synthetic norm distribution") {
    // Norms uniform on [0, 10]: the 0.5 quantile is 5, the 0.8 quantile 8.
    for (double quantile : {0.5, 0.8}) {
      DpConfig cfg = Central(0.1, 0.5, 200);
      cfg.adaptive_quantile = quantile;
      cfg.clip_learning_rate = 0.2;  // σ_b defaults to 200 / 20 = 10
      CentralDp dp(cfg);
      Rng rng(7);
      std::vector<float> out(2);
      double late = 0;
      for (uint32_t t = 1; t <= 300; ++t) {
        std::vector<SparseUpdate> updates;
        for (int i = 0; i < 200; ++i) updates.push_back(Dense({static_cast<float>(10 * rng.Uniform()), 0.0f}));
        std::vector<const SparseUpdate*> ptrs;
        for (const auto& u : updates) ptrs.push_back(&u);
        auto r = dp.Aggregate(t, ptrs, 0.1, out);
        REQUIRE(r.ok());
        if (t > 200) late += r->next_clip / 100;
      }
      CHECK(late == doctest::Approx(10 * quantile).epsilon(0.1));
    }
  }

  TEST_CASE("a DP engine restored from its stored state continues bit for bit; a cut state is refused") {
    const size_t d = 64;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.full_model.bits = 0;
    cfg.dp = Central(0.3, 0.9, 4);
    cfg.dp.adaptive_quantile = 0.5;
    cfg.dp.clip_count_stddev = 2;
    auto encode = [](const std::vector<float>& v) {
      UplinkConfig up;
      up.dense = true;
      auto r = EncodeUplink(v, up, {});
      REQUIRE(r.ok());
      return *r;
    };
    auto run_round = [&](RoundEngine& e, uint32_t round) {
      const std::vector<uint64_t> ids = {1, 2, 3, 4};
      REQUIRE(e.OpenRound(round, ids).ok());
      REQUIRE(e.SetEligible(40).ok());
      for (uint64_t c : ids) {
        REQUIRE(e.Ingest(round, c, e.version(), encode(Gaussian(d, round * 10 + c, 0.2)), 1.0).ok());
      }
      auto out = e.CloseRound(1);
      REQUIRE(out.ok());
      REQUIRE(out->dp.has_value());
      CHECK(out->dp->sampling_rate == 0.1);
      return *out;
    };
    RoundEngine a(Gaussian(d, 1, 0.1), cfg);
    run_round(a, 1);
    run_round(a, 2);
    EngineState state;
    state.version = a.version();
    state.model.assign(a.global_model().begin(), a.global_model().end());
    state.server_state = a.ServerState();
    auto b = RoundEngine::Restore(state, cfg);
    REQUIRE(b.ok());
    CHECK((*b)->dp()->clip() == a.dp()->clip());
    CHECK((*b)->dp()->rounds() == 2);
    const RoundOutcome oa = run_round(a, 3), ob = run_round(**b, 3);
    CHECK(oa.dp->epsilon == ob.dp->epsilon);
    CHECK(oa.dp->next_clip == ob.dp->next_clip);
    CHECK(std::memcmp(a.global_model().data(), (*b)->global_model().data(), 4 * d) == 0);
    CHECK(a.ServerState() == (*b)->ServerState());

    EngineState cut = state;
    cut.server_state.resize(cut.server_state.size() - 8);
    CHECK_FALSE(RoundEngine::Restore(cut, cfg).ok());
  }

  TEST_CASE("target_epsilon: the engine refuses the round that would pass it, naming the round, epsilon and target") {
    const double q = 0.1, z = 1.0, delta = 1e-5;
    // The engine's rounds select a fixed number of clients (DpConfig's default scheme).
    const double eps3 = SubsampledGaussianEpsilon(SamplingScheme::kFixedSize, q, z, 3, delta)->epsilon;
    const double eps4 = SubsampledGaussianEpsilon(SamplingScheme::kFixedSize, q, z, 4, delta)->epsilon;
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kDense;
    cfg.dp = Central(1.0, z, 2);
    cfg.dp.target_epsilon = (eps3 + eps4) / 2;
    RoundEngine e(std::vector<float>(4, 0.0f), cfg);
    UplinkConfig up;
    up.dense = true;
    uint32_t round = 1;
    Status refused = OkStatus();
    for (; round <= 10; ++round) {
      refused = e.CheckPrivacyBudget(round, q);
      if (!refused.ok()) break;
      const std::vector<uint64_t> ids = {1, 2};
      REQUIRE(e.OpenRound(round, ids).ok());
      REQUIRE(e.SetEligible(20).ok());
      for (uint64_t c : ids) REQUIRE(e.Ingest(round, c, e.version(), *EncodeUplink(std::vector<float>(4, 0.1f), up, {}), 1).ok());
      auto out = e.CloseRound(1);
      REQUIRE(out.ok());
      CHECK(out->dp->epsilon <= cfg.dp.target_epsilon);
    }
    CHECK(round == 4);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == ErrorCode::kResourceExhausted);
    const std::string& m = refused.error().message();
    CHECK(m.find("round 4") != std::string::npos);
    CHECK(m.find("privacy.target_epsilon") != std::string::npos);
    CHECK(e.dp()->Spent()->epsilon == doctest::Approx(eps3).epsilon(1e-12));
    // Without DP the engine never refuses.
    RoundEngine plain(std::vector<float>(4, 0.0f), EngineConfig{});
    CHECK(plain.CheckPrivacyBudget(1, 1.0).ok());
  }

  TEST_CASE("[privacy] settings: DP with the top-k pipeline, a robust rule or distributed mode is refused by key") {
    auto read = [](const std::string& text) {
      auto t = ParseToml(text, "test");
      REQUIRE(t.ok());
      ConfigReader r(*t);
      Pipeline pipeline = Pipeline::kFrugal;
      RoundPlan plan;
      TaskConfig task;
      EngineConfig engine;
      Status st = ReadRoundSettings(r, pipeline, plan, task, engine);
      return std::make_pair(st, engine);
    };
    auto [ok, engine] = read("pipeline = \"dense\"\n[round]\nclients_per_round = 50\n"
                             "[privacy]\nmode = \"central\"\nclip = 0.2\nnoise_multiplier = 1.1\n");
    CHECK(ok.ok());
    CHECK(engine.dp.mode == DpMode::kCentral);
    CHECK(engine.dp.expected_clients == 50);
    CHECK(engine.dp.clip == 0.2);

    auto [topk, e1] = read("pipeline = \"frugal\"\n[privacy]\nmode = \"central\"\nnoise_multiplier = 1\n");
    REQUIRE_FALSE(topk.ok());
    CHECK(topk.error().message().find("pipeline") != std::string::npos);
    CHECK(topk.error().message().find("privacy.mode") != std::string::npos);

    auto [robust, e2] = read("pipeline = \"dense\"\n[server]\nrobust = \"median\"\n"
                             "[privacy]\nmode = \"central\"\nnoise_multiplier = 1\n");
    REQUIRE_FALSE(robust.ok());
    CHECK(robust.error().message().find("server.robust") != std::string::npos);

    auto [dist, e3] = read("pipeline = \"dense\"\n[privacy]\nmode = \"distributed\"\nnoise_multiplier = 1\n");
    REQUIRE_FALSE(dist.ok());
    CHECK(dist.error().message().find("distributed") != std::string::npos);
    CHECK(dist.error().message().find("pipeline = \"secure\"") != std::string::npos);
    auto [dist_secure, e7] = read("pipeline = \"secure\"\n[privacy]\nmode = \"distributed\"\nnoise_multiplier = 1\n");
    // Not the binding itself in the message: clang 14 cannot capture a structured binding in doctest's lambda.
    const std::string dist_secure_error = dist_secure.ok() ? std::string() : dist_secure.error().message();
    CHECK_MESSAGE(dist_secure.ok(), dist_secure_error);
    CHECK(e7.secure.ring.bits == 32);  // room for the clipped values and the noise
    auto [central_secure, e8] = read("pipeline = \"secure\"\n[privacy]\nmode = \"central\"\nnoise_multiplier = 1\n");
    REQUIRE_FALSE(central_secure.ok());
    CHECK(central_secure.error().message().find("distributed") != std::string::npos);

    auto [no_noise, e4] = read("pipeline = \"dense\"\n[privacy]\nmode = \"central\"\n");
    REQUIRE_FALSE(no_noise.ok());
    CHECK(no_noise.error().message().find("privacy.noise_multiplier") != std::string::npos);

    // A target alone is accepted; the front end derives the noise from it.
    auto [target, e5] = read("pipeline = \"dense\"\n[round]\nclients_per_round = 10\n"
                             "[privacy]\nmode = \"central\"\ntarget_epsilon = 4\n");
    REQUIRE(target.ok());
    EngineConfig derived = e5;
    REQUIRE(DeriveNoiseFromTarget(derived, 0.01, 100).ok());
    CHECK(e5.dp.sampling == SamplingScheme::kFixedSize);  // round.sampling's default, "fixed"
    CHECK(derived.dp.noise_multiplier == *NoiseMultiplierForEpsilon(SamplingScheme::kFixedSize, 4, 0.01, 100, 1e-5));

    auto [bad_delta, e6] = read("pipeline = \"dense\"\n[privacy]\nmode = \"central\"\nnoise_multiplier = 1\ndelta = 2\n");
    REQUIRE_FALSE(bad_delta.ok());
    CHECK(bad_delta.error().message().find("privacy.delta") != std::string::npos);
  }

  TEST_CASE("Skellam RDP bounds the exact Renyi divergence of the shifted Skellam, and is tight at large mu") {
    for (double mu : {5.0, 50.0}) {
      for (double alpha : {1.5, 2.0, 3.0, 8.0}) {
        const double exact = ExactSkellamDivergence(mu, alpha);
        const double bound = SkellamRdp(alpha, mu, 1, 1);
        CAPTURE(mu);
        CAPTURE(alpha);
        CHECK(bound >= exact);
        if (mu == 50.0) CHECK(exact >= 0.95 * bound);
      }
    }
  }

  TEST_CASE("distributed noise: only survivors' shares reach the sum, and the accounting uses that noise") {
    auto all = DistributedSkellamNoise(30.0, 10, 4.0);
    auto dropped = DistributedSkellamNoise(30.0, 8, 4.0);
    REQUIRE(all.ok());
    REQUIRE(dropped.ok());
    CHECK(all->mu == 300.0);
    CHECK(dropped->mu == 240.0);
    CHECK(dropped->noise_multiplier == doctest::Approx(std::sqrt(480.0) / 4.0));
    CHECK_FALSE(DistributedSkellamNoise(30.0, 0, 4.0).ok());

    // q = 1: the Skellam RDP itself, at the survivors' noise.
    RdpAccountant exact;
    REQUIRE(ComposeDistributedSkellam(exact, SamplingScheme::kPoisson, 1.0, 30.0, 8, 16.0, 4.0).ok());
    for (size_t i = 0; i < exact.orders().size(); ++i) {
      CHECK(exact.rdp()[i] == SkellamRdp(exact.orders()[i], 240.0, 16.0, 4.0));
    }
    // q < 1: Zhu & Wang's general Poisson bound over the Skellam RDP at each
    // integer order (a chord of the log-moment between them), at the
    // survivors' noise; it lies above the subsampled Gaussian at the
    // equivalent z (the approximation it replaced) at every order.
    RdpAccountant sampled, gaussian;
    REQUIRE(ComposeDistributedSkellam(sampled, SamplingScheme::kPoisson, 0.02, 30.0, 8, 16.0, 4.0).ok());
    REQUIRE(gaussian.Compose(0.02, dropped->noise_multiplier).ok());
    auto skellam_bound = [](uint32_t a) {
      return *PoissonSubsampledRdpBound(0.02, a, [](uint32_t j) { return SkellamRdp(j, 240.0, 16.0, 4.0); });
    };
    for (size_t i = 0; i < sampled.orders().size(); ++i) {
      const double a = sampled.orders()[i], lo = std::floor(a), hi = std::ceil(a);
      const double want = lo == hi ? skellam_bound(static_cast<uint32_t>(a))
                                   : ((hi - a) * (lo - 1) * (lo >= 2 ? skellam_bound(static_cast<uint32_t>(lo)) : 0) +
                                      (a - lo) * (hi - 1) * skellam_bound(static_cast<uint32_t>(hi))) /
                                         (a - 1);
      CAPTURE(a);
      CHECK(sampled.rdp()[i] == doctest::Approx(want).epsilon(1e-14));
      CHECK(sampled.rdp()[i] > gaussian.rdp()[i]);
    }
    // Fewer survivors: less noise, more epsilon.
    RdpAccountant more;
    REQUIRE(ComposeDistributedSkellam(more, SamplingScheme::kPoisson, 1.0, 30.0, 10, 16.0, 4.0).ok());
    CHECK(more.Spent(1e-5)->epsilon < exact.Spent(1e-5)->epsilon);
  }

  TEST_CASE("distributed DP in the ring: L2 clip, the key's Skellam draws added to the levels, none in the residual") {
    const size_t d = 30'000;
    std::vector<uint32_t> support;
    for (uint32_t i = 0; i < d; i += 2) support.push_back(i);  // k = 15,000
    RingQuantConfig ring{.bits = 32, .clip = 1.0f, .max_summands = 10};
    ring.l2_clip = 1.0;
    ring.noise_mu = 40.0;
    ring.noise_margin = 1 << 20;
    const std::vector<float> update = Gaussian(d, 31, 0.05);  // support norm about 6: clipped to 1
    std::vector<float> res_noisy(d, 0.0f), res_plain(d, 0.0f);
    NoiseKey key{};
    key[0] = 7;
    RingQuantConfig plain_ring = ring;
    plain_ring.noise_mu = 0;
    auto noisy = RingQuantize(update, support, ring, 99, res_noisy, &key);
    auto plain = RingQuantize(update, support, plain_ring, 99, res_plain);
    REQUIRE(noisy.ok());
    REQUIRE(plain.ok());
    CHECK_FALSE(RingQuantize(update, support, ring, 99, {}).ok());  // noise without a key
    CHECK(res_noisy == res_plain);  // error feedback never sees the noise
    // Plain reference: the levels of the clipped vector, then the key's draws in order.
    auto stream = *NoiseStream::Create(key);
    double sq = 0, noise_sq = 0, noise_sum = 0;
    bool exact = true;
    for (size_t j = 0; j < support.size(); ++j) {
      const auto level = static_cast<int32_t>(static_cast<uint32_t>((*plain)[j]));
      const auto sent = static_cast<int32_t>(static_cast<uint32_t>((*noisy)[j]));
      const int64_t noise = int64_t{sent} - level;
      exact = exact && noise == stream.Skellam(40.0);
      sq += double(level) * level;
      noise_sq += double(noise) * noise;
      noise_sum += double(noise);
    }
    CHECK(exact);
    const double k = support.size();
    // The clipped vector's norm in levels: the max level, within the rounding's sqrt(k).
    CHECK(std::fabs(std::sqrt(sq) - RingMaxLevel(ring)) <= std::sqrt(k));
    CHECK(std::fabs(noise_sum / k) < 5 * std::sqrt(80.0 / k));
    CHECK(std::fabs(noise_sq / k / 80.0 - 1) < 5 * std::sqrt(2.0 / k));
  }

  TEST_CASE("distributed DP plan: the survivors' summed noise has the analytic Skellam variance and fits the ring") {
    DpConfig dp;
    dp.mode = DpMode::kDistributed;
    dp.clip = 0.5;
    dp.noise_multiplier = 0.8;
    dp.expected_clients = 20;
    const size_t k = 4'000;
    RingQuantConfig base{.bits = 32, .clip = 0.1f, .max_summands = 20};
    auto plan = PlanDistributedRing(dp, base, 0.25, k);
    REQUIRE(plan.ok());
    CHECK(plan->expected_survivors == 15);
    CHECK(plan->ring.l2_clip == 0.5);
    CHECK(plan->ring.clip == 0.5f);
    CHECK(plan->l2_levels == doctest::Approx(RingMaxLevel(plan->ring) + std::sqrt(double(k))));
    // The expected survivors' noise is z Δ2.
    CHECK(2 * 15 * plan->ring.noise_mu == doctest::Approx(std::pow(0.8 * plan->l2_levels, 2)).epsilon(1e-12));
    // No wrap: 20 clients at the max level plus the margin stay inside the ring.
    CHECK(20 * RingMaxLevel(plan->ring) + plan->ring.noise_margin <= (int64_t{1} << 31) - 1);
    CHECK(plan->ring.noise_margin >= 12 * std::sqrt(2 * 20 * plan->ring.noise_mu));
    // Too small a ring is refused by key.
    RingQuantConfig small = base;
    small.bits = 12;
    auto refused = PlanDistributedRing(dp, small, 0.25, k);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message().find("secure.bits") != std::string::npos);

    // 12 of the 20 survive: their noise shares sum to Sk(12 mu) per entry.
    std::vector<uint32_t> support(k);
    for (uint32_t i = 0; i < k; ++i) support[i] = i;
    const std::vector<float> zero(k, 0.0f);
    std::vector<uint64_t> sum(k, 0);
    for (uint64_t c = 0; c < 12; ++c) {
      const NoiseKey key = SeededNoiseKey(5, c + 1, 1);
      auto in = RingQuantize(zero, support, plan->ring, c, {}, &key);
      REQUIRE(in.ok());
      for (size_t j = 0; j < k; ++j) sum[j] = (sum[j] + (*in)[j]) & 0xffffffffULL;
    }
    auto decoded = RingDecodeSum(sum, 12, plan->ring);
    REQUIRE(decoded.ok());
    const double scale = RingScale(plan->ring);
    double var = 0;
    for (double v : *decoded) var += (v * scale) * (v * scale);
    var /= k;
    const double want = 2 * 12 * plan->ring.noise_mu;
    CHECK(std::fabs(var / want - 1) < 5 * std::sqrt(2.0 / k));
  }

  TEST_CASE("distributed DP accounting counts only the survivors' noise, and the engine accounts each secure round") {
    DpConfig dp;
    dp.mode = DpMode::kDistributed;
    dp.clip = 0.5;
    dp.noise_multiplier = 1.2;
    dp.expected_clients = 20;
    auto plan = PlanDistributedRing(dp, RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 20}, 0.25, 1000);
    REQUIRE(plan.ok());
    for (double q : {1.0, 0.05}) {
      std::vector<double> eps;
      for (uint32_t survivors : {15u, 11u}) {
        CentralDp acc(dp);
        acc.SetDistributedRing(*plan);
        auto r = acc.AccountDistributed(1, q, survivors);
        REQUIRE(r.ok());
        RdpAccountant ref;
        REQUIRE(ComposeDistributedSkellam(ref, dp.sampling, q, plan->ring.noise_mu, survivors, plan->l1_levels, plan->l2_levels)
                    .ok());
        CHECK(r->epsilon == ref.Spent(dp.delta)->epsilon);
        eps.push_back(r->epsilon);
        if (q < 1) {
          // The Gaussian equivalent: z sqrt(survivors / expected survivors).
          CHECK(std::sqrt(2 * survivors * plan->ring.noise_mu) / plan->l2_levels ==
                doctest::Approx(1.2 * std::sqrt(survivors / 15.0)).epsilon(1e-12));
        }
      }
      CHECK(eps[1] > eps[0]);  // four dropped clients took their noise with them
    }
    CentralDp bare(dp);
    CHECK_FALSE(bare.AccountDistributed(1, 1.0, 15).ok());  // no ring plan

    // Through the engine: a secure round with distributed DP accounts its survivors.
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kSecure;
    cfg.uplink_density = 0.5;
    cfg.dp = dp;
    cfg.dp.expected_clients = 4;
    cfg.secure.ring = RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 4};
    cfg.secure.dropout = 0.25;
    RoundEngine engine(std::vector<float>(400, 0.0f), cfg);
    const RingQuantConfig& ring = engine.secure_config().ring;
    CHECK(ring.noise_mu > 0);
    CHECK(ring.l2_clip == 0.5);
    const std::vector<uint64_t> ids = {1, 2, 3, 4};
    REQUIRE(engine.OpenRound(1, ids).ok());
    REQUIRE(engine.SetEligible(40).ok());
    auto support = engine.SecureSupport(1);
    REQUIRE(support.ok());
    std::vector<uint64_t> sum(support->size(), 0);
    for (uint64_t c : {1, 2, 3}) {  // client 4 dropped
      const NoiseKey key = SeededNoiseKey(9, c, 1);
      auto in = RingQuantize(Gaussian(400, c, 0.1), *support, ring, c, {}, &key);
      REQUIRE(in.ok());
      for (size_t j = 0; j < sum.size(); ++j) sum[j] = (sum[j] + (*in)[j]) & 0xffffffffULL;
    }
    REQUIRE(engine.IngestSecureSum(1, std::vector<uint64_t>{1, 2, 3}, sum).ok());
    auto out = engine.CloseRound(1);
    REQUIRE(out.ok());
    REQUIRE(out->dp.has_value());
    auto planned = PlanDistributedRing(cfg.dp, cfg.secure.ring, 0.25, support->size());
    RdpAccountant ref;
    REQUIRE(ComposeDistributedSkellam(ref, cfg.dp.sampling, 0.1, planned->ring.noise_mu, 3, planned->l1_levels, planned->l2_levels).ok());
    CHECK(out->dp->epsilon == ref.Spent(dp.delta)->epsilon);
    CHECK(engine.dp()->rounds() == 1);
  }

  TEST_CASE("distributed DP derives its noise from the target with the bound it accounts with, not the Gaussian's") {
    EngineConfig cfg;
    cfg.pipeline = Pipeline::kSecure;
    cfg.uplink_density = 0.5;
    cfg.dp.mode = DpMode::kDistributed;
    cfg.dp.clip = 0.5;
    cfg.dp.target_epsilon = 2;
    cfg.dp.expected_clients = 20;
    cfg.secure.ring = RingQuantConfig{.bits = 32, .clip = 0.1f, .max_summands = 20};
    cfg.secure.dropout = 0.25;
    // Poisson accounting first: there the Skellam's bound (Zhu & Wang's) and the Gaussian's (exact) differ.
    cfg.dp.sampling = SamplingScheme::kPoisson;
    constexpr double kQ = 0.05;
    constexpr uint32_t kRounds = 10;
    constexpr size_t kDim = 400;
    EngineConfig derived = cfg;
    REQUIRE(DeriveNoiseFromTarget(derived, kQ, kRounds, kDim).ok());
    const double z = derived.dp.noise_multiplier;
    // epsilon after kRounds rounds with the plan for a given z, round by round as the engine accounts them.
    auto spent = [&](double zz) {
      DpConfig dp = cfg.dp;
      dp.noise_multiplier = zz;
      auto plan = PlanDistributedRing(dp, cfg.secure.ring, cfg.secure.dropout, UplinkKeepCount(0.5, kDim));
      REQUIRE(plan.ok());
      RdpAccountant acc;
      for (uint32_t r = 0; r < kRounds; ++r) {
        REQUIRE(ComposeDistributedSkellam(acc, dp.sampling, kQ, plan->ring.noise_mu, plan->expected_survivors, plan->l1_levels,
                                          plan->l2_levels)
                    .ok());
      }
      return acc.Spent(dp.delta)->epsilon;
    };
    CHECK(spent(z) <= 2.0);
    CHECK(spent(z * (1 - 1e-5)) > 2.0);  // the smallest such z, to the search's 1e-6
    // The Gaussian's noise for the same target is smaller, and would overspend the proven bound.
    const double gaussian = *NoiseMultiplierForEpsilon(cfg.dp.sampling, 2, kQ, kRounds, 1e-5);
    CHECK(gaussian < z);
    CHECK(spent(gaussian) > 2.0);
    // Without the model's dimension the front end falls back to the Gaussian's.
    EngineConfig no_dim = cfg;
    REQUIRE(DeriveNoiseFromTarget(no_dim, kQ, kRounds).ok());
    CHECK(no_dim.dp.noise_multiplier == gaussian);

    // Fixed-size accounting (the secure pipeline's sampling): the derived noise meets the target under the
    // without-replacement bound at replace-one sensitivity, no less noise does, and it is more than the
    // Poisson accounting's z (replace-one moves the sum twice as far).
    cfg.dp.sampling = SamplingScheme::kFixedSize;
    EngineConfig fixed = cfg;
    REQUIRE(DeriveNoiseFromTarget(fixed, kQ, kRounds, kDim).ok());
    const double zf = fixed.dp.noise_multiplier;
    CHECK(spent(zf) <= 2.0);
    CHECK(spent(zf * (1 - 1e-5)) > 2.0);
    CHECK(zf > 1.5 * z);
  }

  TEST_CASE("a round accounts the bound of the sampling it ran: fixed-size (replace-one) or Poisson (add/remove)") {
    const SparseUpdate u = Dense({0.3f, -0.2f});
    const SparseUpdate* ptr = &u;
    std::vector<float> out(2);
    std::vector<double> eps;
    for (SamplingScheme scheme : {SamplingScheme::kFixedSize, SamplingScheme::kPoisson}) {
      DpConfig cfg = Central(1.0, 1.1, 10);
      cfg.sampling = scheme;
      CentralDp dp(cfg);
      for (uint32_t t = 1; t <= 5; ++t) REQUIRE(dp.Aggregate(t, std::span(&ptr, 1), 0.05, out).ok());
      auto want = SubsampledGaussianEpsilon(scheme, 0.05, 1.1, 5, cfg.delta);
      REQUIRE(want.ok());
      CHECK(dp.Spent()->epsilon == doctest::Approx(want->epsilon).epsilon(1e-12));
      // The budget check looks one round ahead with the same bound.
      RdpAccountant six;
      REQUIRE(six.Compose(scheme, 0.05, 1.1, 6).ok());
      CHECK(dp.SpentAfterOneMore(0.05)->epsilon == doctest::Approx(six.Spent(cfg.delta)->epsilon).epsilon(1e-12));
      eps.push_back(want->epsilon);
    }
    CHECK(eps[0] > eps[1]);  // replace-one under fixed-size sampling is the larger (and different) number
    // DpConfig's default is the fixed-size scheme, as round.sampling's is "fixed".
    CHECK(DpConfig{}.sampling == SamplingScheme::kFixedSize);

    // Distributed DP under fixed-size sampling: the bound over the Skellam RDP at doubled sensitivities, per
    // order against a plain recomputation; at q = 1 the doubled-sensitivity Skellam RDP itself.
    RdpAccountant fixed, poisson;
    REQUIRE(ComposeDistributedSkellam(fixed, SamplingScheme::kFixedSize, 0.02, 30.0, 8, 16.0, 4.0).ok());
    REQUIRE(ComposeDistributedSkellam(poisson, SamplingScheme::kPoisson, 0.02, 30.0, 8, 16.0, 4.0).ok());
    for (size_t i = 0; i < fixed.orders().size(); ++i) {
      const double a = fixed.orders()[i];
      if (a != std::floor(a)) continue;
      auto want = FixedSizeSubsampledRdpBound(0.02, static_cast<uint32_t>(a), [](uint32_t j) {
        return SkellamRdp(static_cast<double>(j), 240.0, 32.0, 8.0);
      });
      REQUIRE(want.ok());
      CAPTURE(a);
      CHECK(fixed.rdp()[i] == doctest::Approx(*want).epsilon(1e-14));
      CHECK(fixed.rdp()[i] != poisson.rdp()[i]);
    }
    RdpAccountant all;
    REQUIRE(ComposeDistributedSkellam(all, SamplingScheme::kFixedSize, 1.0, 30.0, 8, 16.0, 4.0).ok());
    for (size_t i = 0; i < all.orders().size(); ++i) {
      CHECK(all.rdp()[i] == SkellamRdp(all.orders()[i], 240.0, 32.0, 8.0));
    }
  }

  TEST_CASE("RdpAccountant::ComposeRdp adds per-order values and refuses a wrong length or a negative value") {
    RdpAccountant a, b;
    REQUIRE(a.Compose(0.1, 1.2, 3).ok());
    REQUIRE(b.ComposeRdp(a.rdp()).ok());
    CHECK(b.rdp() == a.rdp());
    CHECK(b.Spent(1e-5)->epsilon == a.Spent(1e-5)->epsilon);
    CHECK_FALSE(b.ComposeRdp(std::vector<double>{1.0}).ok());
    std::vector<double> negative(a.orders().size(), -1.0);
    CHECK_FALSE(b.ComposeRdp(negative).ok());
  }
}

}  // namespace frugal::privacy
