#include "frugal/privacy/accountant.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

namespace frugal::privacy {
namespace {

// Relative closeness (doctest's Approx adds an absolute scale of 1, far too loose here).
bool Near(double got, double want, double rtol) {
  return std::fabs(got - want) <= rtol * std::fabs(want);
}

// A plain reference for log A_alpha: the defining integral of E_{z~N(0,s^2)}[(mu(z)/mu0(z))^alpha],
// mu/mu0 = (1 - q) + q exp((2z - 1) / (2 s^2)), by the trapezoid rule on a fine grid.
double LogAByQuadrature(double q, double s, double alpha) {
  const double lo = -40 * s, hi = 40 * s + alpha * s * s + 1, h = 1e-3 * s;
  const auto n = static_cast<long>((hi - lo) / h);
  double sum = 0;
  for (long i = 0; i <= n; ++i) {
    const double z = lo + static_cast<double>(i) * h;
    const double log_mu0 = -z * z / (2 * s * s) - 0.5 * std::log(2 * std::numbers::pi * s * s);
    const double log_ratio = std::log1p(q * std::expm1((2 * z - 1) / (2 * s * s)));
    sum += (i == 0 || i == n ? 0.5 : 1.0) * std::exp(log_mu0 + alpha * log_ratio);
  }
  return std::log(sum * h);
}

// A plain lower bound on the replace-one RDP of the Gaussian sum over a sample
// of a fraction g drawn without replacement: one pair of neighbouring data
// sets, all zeros but one client, whose clipped update is +1 in one and -1 in
// the other (they differ by 2C, C = 1). The sample holds that client with
// probability g, so the two outputs are (1 - g) N(0, s^2) + g N(+-1, s^2), and
// their Renyi divergence of order alpha, by the trapezoid rule, is a value the
// mechanism reaches: any upper bound must lie above it.
double ReplaceOnePairDivergence(double g, double s, double alpha) {
  const double lo = -40 * s - 1, hi = 40 * s + 1 + alpha * 4, h = 1e-3 * s;
  const auto n = static_cast<long>((hi - lo) / h);
  auto log_mix = [&](double x, double shift) {
    const double a = std::log1p(-g) - x * x / (2 * s * s);
    const double b = std::log(g) - (x - shift) * (x - shift) / (2 * s * s);
    const double m = std::max(a, b);
    return m + std::log(std::exp(a - m) + std::exp(b - m)) - 0.5 * std::log(2 * std::numbers::pi * s * s);
  };
  double log_sum = -INFINITY;
  for (long i = 0; i <= n; ++i) {
    const double x = lo + static_cast<double>(i) * h;
    const double t = alpha * log_mix(x, 1.0) + (1 - alpha) * log_mix(x, -1.0) + (i == 0 || i == n ? std::log(0.5) : 0);
    const double m = std::max(log_sum, t);
    log_sum = m == -INFINITY ? m : m + std::log(std::exp(log_sum - m) + std::exp(t - m));
  }
  return (log_sum + std::log(h)) / (alpha - 1);
}

TEST_SUITE("privacy") {
  TEST_CASE(
      "Opacus's vector: z 1.5, q 0.04, 2250 steps, delta 1e-5 over the default orders gives eps "
      "7.32911117143") {
    auto spent = SubsampledGaussianEpsilon(0.04, 1.5, 2250, 1e-5);
    REQUIRE(spent.ok());
    CHECK(Near(spent->epsilon, 7.32911117143, 1e-9));
    // The optimum is an interior order, not an end of the grid.
    const std::vector<double> orders = DefaultRdpOrders();
    CHECK(spent->order > orders.front());
    CHECK(spent->order < orders.back());
  }

  TEST_CASE("the default orders are Opacus's: 1.1..10.9 by tenths, then 12..63") {
    const std::vector<double> orders = DefaultRdpOrders();
    REQUIRE(orders.size() == 99 + 52);
    CHECK(orders.front() == 1.1);
    CHECK(orders[9] == 2.0);  // exactly an integer, so it takes the binomial expansion
    CHECK(orders[98] == 10.9);
    CHECK(orders[99] == 12.0);
    CHECK(orders.back() == 63.0);
  }

  TEST_CASE(
      "Google dp_accounting's vector: Poisson q 0.01, z 2.5, 50 steps at orders 1.5, 2.5, 5, 50, "
      "100") {
    // As published in dp_accounting's rdp_privacy_accountant_test.py
    // (test_compute_rdp_poisson_sampled_gaussian, rtol 1e-4). REFERENCES.md's copy
    // reads 6.70579741e-4 at order 1.5: the integral below gives 6.50071e-4.
    const std::vector<double> orders = {1.5, 2.5, 5, 50, 100};
    const std::vector<double> expected = {6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02,
                                          1.6742e+02};
    auto rdp = ComputeRdp(0.01, 2.5, 50, orders);
    REQUIRE(rdp.ok());
    for (size_t i = 0; i < orders.size(); ++i) {
      CAPTURE(orders[i]);
      CAPTURE((*rdp)[i]);
      CHECK(Near((*rdp)[i], expected[i], 1e-4));
    }
  }

  TEST_CASE("log A matches its defining integral at integer and fractional orders") {
    struct Case {
      double q, sigma, order;
    };
    for (const Case& c : {Case{0.01, 2.5, 1.5}, Case{0.01, 2.5, 2.5}, Case{0.01, 2.5, 5},
                          Case{1e-4, 1.0, 1.5}, Case{1e-3, 1.0, 2}, Case{0.01, 10, 20},
                          Case{0.1, 1.0, 7.3}, Case{0.04, 1.5, 3.9}, Case{0.3, 0.8, 2.2}}) {
      auto rdp = SubsampledGaussianRdp(c.q, c.sigma, c.order);
      REQUIRE(rdp.ok());
      const double log_a = *rdp * (c.order - 1);
      CAPTURE(c.q);
      CAPTURE(c.sigma);
      CAPTURE(c.order);
      CAPTURE(log_a);
      CHECK(Near(log_a, LogAByQuadrature(c.q, c.sigma, c.order), 1e-6));
    }
  }

  TEST_CASE("without subsampling the RDP is the Gaussian's, order / (2 z^2)") {
    for (double order : {1.5, 2.0, 7.0, 32.5}) {
      CHECK(Near(GaussianRdp(1.3, order), order / (2 * 1.3 * 1.3), 1e-15));
      auto rdp = SubsampledGaussianRdp(1.0, 1.3, order);
      REQUIRE(rdp.ok());
      CHECK(Near(*rdp, order / (2 * 1.3 * 1.3), 1e-15));
    }
  }

  TEST_CASE(
      "fractional orders next to an integer agree with the integer expansion (two methods, one "
      "function)") {
    for (double q : {0.001, 0.05, 0.3}) {
      for (double z : {0.7, 1.1, 4.0}) {
        for (int a : {2, 3, 8, 20}) {
          auto exact = SubsampledGaussianRdp(q, z, a);
          auto below = SubsampledGaussianRdp(q, z, a - 1e-7);
          auto above = SubsampledGaussianRdp(q, z, a + 1e-7);
          REQUIRE(exact.ok());
          REQUIRE(below.ok());
          REQUIRE(above.ok());
          CAPTURE(q);
          CAPTURE(z);
          CAPTURE(a);
          CHECK(Near(*below, *exact, 1e-5));
          CHECK(Near(*above, *exact, 1e-5));
          CHECK(*below <= *above);
        }
      }
    }
  }

  TEST_CASE("edge cases: no sampling costs nothing, no noise costs everything") {
    CHECK(*SubsampledGaussianRdp(0.0, 1.0, 2.5) == 0.0);
    CHECK(std::isinf(*SubsampledGaussianRdp(0.1, 0.0, 2.5)));
    auto spent = SubsampledGaussianEpsilon(0.1, 0.0, 10, 1e-5);
    REQUIRE(spent.ok());
    CHECK(std::isinf(spent->epsilon));
  }

  TEST_CASE("epsilon grows with steps and sampling rate and falls with noise") {
    const double base = SubsampledGaussianEpsilon(0.02, 1.0, 1000, 1e-5)->epsilon;
    CHECK(SubsampledGaussianEpsilon(0.02, 1.0, 2000, 1e-5)->epsilon > base);
    CHECK(SubsampledGaussianEpsilon(0.04, 1.0, 1000, 1e-5)->epsilon > base);
    CHECK(SubsampledGaussianEpsilon(0.02, 1.5, 1000, 1e-5)->epsilon < base);
    CHECK(SubsampledGaussianEpsilon(0.02, 1.0, 1000, 1e-7)->epsilon > base);
  }

  TEST_CASE(
      "the accountant composes rounds: two halves equal the whole, and nothing spent is zero") {
    RdpAccountant acc;
    auto none = acc.Spent(1e-5);
    REQUIRE(none.ok());
    CHECK(none->epsilon == 0.0);
    REQUIRE(acc.Compose(0.04, 1.5, 1000).ok());
    REQUIRE(acc.Compose(0.04, 1.5, 1250).ok());
    auto spent = acc.Spent(1e-5);
    REQUIRE(spent.ok());
    CHECK(Near(spent->epsilon, 7.32911117143, 1e-9));
    CHECK_FALSE(acc.Compose(-0.1, 1.0).ok());  // refused, and nothing added
    CHECK(Near(acc.Spent(1e-5)->epsilon, 7.32911117143, 1e-9));
  }

  TEST_CASE("the planning inverse finds the noise that just meets a target epsilon") {
    auto z = NoiseMultiplierForEpsilon(7.32911117143, 0.04, 2250, 1e-5);
    REQUIRE(z.ok());
    CHECK(Near(*z, 1.5, 1e-5));
    for (double target : {1.0, 2.0, 4.0, 8.0}) {
      auto zt = NoiseMultiplierForEpsilon(target, 0.01, 500, 1e-5);
      REQUIRE(zt.ok());
      CAPTURE(target);
      CHECK(SubsampledGaussianEpsilon(0.01, *zt, 500, 1e-5)->epsilon <= target);
      CHECK(SubsampledGaussianEpsilon(0.01, *zt * (1 - 1e-4), 500, 1e-5)->epsilon > target);
    }
  }

  TEST_CASE("out-of-contract arguments are errors, not numbers") {
    CHECK_FALSE(SubsampledGaussianRdp(-0.1, 1.0, 2.0).ok());
    CHECK_FALSE(SubsampledGaussianRdp(1.1, 1.0, 2.0).ok());
    CHECK_FALSE(SubsampledGaussianRdp(std::nan(""), 1.0, 2.0).ok());
    CHECK_FALSE(SubsampledGaussianRdp(0.1, -1.0, 2.0).ok());
    CHECK_FALSE(SubsampledGaussianRdp(0.1, 1.0, 1.0).ok());
    CHECK_FALSE(SubsampledGaussianEpsilon(0.1, 1.0, 10, 0.0).ok());
    CHECK_FALSE(SubsampledGaussianEpsilon(0.1, 1.0, 10, 1.0).ok());
    const std::vector<double> orders = {2.0, 3.0};
    const std::vector<double> one = {0.1};
    CHECK_FALSE(RdpToEpsilon(orders, one, 1e-5).ok());
    CHECK_FALSE(NoiseMultiplierForEpsilon(0.0, 0.1, 10, 1e-5).ok());
  }

  TEST_CASE("the general Poisson bound (Zhu & Wang Thm 6) on a Gaussian: above the exact value, within log 3/(a-1)") {
    // For the Gaussian the exact subsampled RDP is the same sum without the
    // factor 3 on the j >= 3 terms, so the bound is exact at a = 2, strictly
    // above from a = 3, and never more than log(3)/(a-1) above.
    for (double q : {0.001, 1.0 / 60, 0.04, 0.3}) {
      for (double z : {0.5, 1.0, 1.5, 3.0}) {
        for (uint32_t a : {2u, 3u, 5u, 10u, 32u, 63u}) {
          auto bound = PoissonSubsampledRdpBound(q, a, [&](uint32_t j) { return GaussianRdp(z, j); });
          auto exact = SubsampledGaussianRdp(q, z, a);
          REQUIRE(bound.ok());
          REQUIRE(exact.ok());
          CAPTURE(q);
          CAPTURE(z);
          CAPTURE(a);
          CHECK(std::isfinite(*bound));
          if (a == 2) {
            // Both sum to 1 + O(q^2): their logs agree to about 1e-16 absolute.
            CHECK(std::fabs(*bound - *exact) <= 1e-15 + 1e-12 * *exact);
          } else {
            CHECK(*bound > *exact);
          }
          CHECK(*bound - *exact <= std::log(3.0) / (a - 1) + 1e-12);
        }
      }
    }
  }

  TEST_CASE("the general Poisson bound equals its formula summed plainly in long double, and q = 1 gives the base") {
    // An arbitrary base curve (not a Gaussian), eps(j) = 0.2 j + 0.05.
    auto base = [](uint32_t j) { return 0.2 * j + 0.05; };
    const long double q = 0.1L, e2 = 0.45L, e3 = 0.65L, e4 = 0.85L;
    // a = 3: (1-q)^2 (3q - q + 1) + C(3,2) q^2 (1-q) e^{eps(2)} + 3 C(3,3) q^3 e^{2 eps(3)}
    const long double s3 = (1 - q) * (1 - q) * (3 * q - q + 1) + 3 * q * q * (1 - q) * std::exp(e2) +
                           3 * q * q * q * std::exp(2 * e3);
    // a = 4: (1-q)^3 (4q - q + 1) + 6 q^2 (1-q)^2 e^{eps(2)} + 3 (4 q^3 (1-q) e^{2 eps(3)} + q^4 e^{3 eps(4)})
    const long double s4 = std::pow(1 - q, 3) * (4 * q - q + 1) + 6 * q * q * (1 - q) * (1 - q) * std::exp(e2) +
                           3 * (4 * q * q * q * (1 - q) * std::exp(2 * e3) + q * q * q * q * std::exp(3 * e4));
    auto b3 = PoissonSubsampledRdpBound(0.1, 3, base);
    auto b4 = PoissonSubsampledRdpBound(0.1, 4, base);
    REQUIRE(b3.ok());
    REQUIRE(b4.ok());
    CHECK(Near(*b3, static_cast<double>(std::log(s3) / 2), 1e-13));
    CHECK(Near(*b4, static_cast<double>(std::log(s4) / 3), 1e-13));
    // q = 1: the sample is the whole data set, the mechanism's own RDP; q = 0: nothing released.
    for (uint32_t a : {2u, 7u, 40u}) {
      CHECK(*PoissonSubsampledRdpBound(1.0, a, base) == base(a));
      CHECK(*PoissonSubsampledRdpBound(0.0, a, base) == 0.0);
    }
    // Between integer orders, the chord of K(a) = (a - 1) eps(a), with K(1) = 0.
    const std::vector<double> orders = {1.5, 2.0, 2.5, 3.25, 12.0};
    auto at = PoissonSubsampledRdpBound(0.1, orders, base);
    REQUIRE(at.ok());
    const double b2 = *PoissonSubsampledRdpBound(0.1, 2, base);
    CHECK(Near((*at)[0], (0.5 * b2) / 0.5, 1e-15));
    CHECK((*at)[1] == b2);
    CHECK(Near((*at)[2], (0.5 * 1 * b2 + 0.5 * 2 * *b3) / 1.5, 1e-15));
    CHECK(Near((*at)[3], (0.75 * 2 * *b3 + 0.25 * 3 * *b4) / 2.25, 1e-15));
    CHECK((*at)[4] == *PoissonSubsampledRdpBound(0.1, 12, base));
    // On a Gaussian base the chord still lies above the exact subsampled RDP at fractional orders.
    for (double a : {1.3, 2.5, 3.9, 10.7}) {
      const std::vector<double> one = {a};
      auto chord = PoissonSubsampledRdpBound(0.04, one, [](uint32_t j) { return GaussianRdp(1.5, j); });
      REQUIRE(chord.ok());
      CAPTURE(a);
      CHECK((*chord)[0] >= *SubsampledGaussianRdp(0.04, 1.5, a));
    }
    // Refusals: an order below 2, q outside [0, 1], a negative or NaN base value.
    CHECK_FALSE(PoissonSubsampledRdpBound(0.1, 1, base).ok());
    CHECK_FALSE(PoissonSubsampledRdpBound(1.5, 3, base).ok());
    CHECK_FALSE(PoissonSubsampledRdpBound(0.1, 3, [](uint32_t) { return -1.0; }).ok());
    CHECK_FALSE(PoissonSubsampledRdpBound(0.1, 3, [](uint32_t) { return std::nan(""); }).ok());
    CHECK(std::isinf(*PoissonSubsampledRdpBound(0.1, 3, [](uint32_t) { return INFINITY; })));
  }

  TEST_CASE("the fixed-size bound (Wang, Balle, Kasiviswanathan Thm 9) equals its formula summed plainly in long double") {
    auto base = [](uint32_t j) { return 0.2 * j + 0.05; };
    const long double g = 0.1L, e2 = 0.45L, e3 = 0.65L, e4 = 0.85L;
    // eps(inf) = inf: min{2, .} = 2, and the j = 2 weight is min{4 (e^{eps(2)} - 1), 2 e^{eps(2)}}.
    const long double w2 = std::min(4 * std::expm1(e2), 2 * std::exp(e2));
    const long double s3 = 1 + g * g * 3 * w2 + g * g * g * std::exp(2 * e3) * 2;
    const long double s4 = 1 + g * g * 6 * w2 + 4 * g * g * g * std::exp(2 * e3) * 2 + g * g * g * g * std::exp(3 * e4) * 2;
    auto b3 = FixedSizeSubsampledRdpBound(0.1, 3, base);
    auto b4 = FixedSizeSubsampledRdpBound(0.1, 4, base);
    REQUIRE(b3.ok());
    REQUIRE(b4.ok());
    CHECK(Near(*b3, static_cast<double>(std::log(s3) / 2), 1e-13));
    CHECK(Near(*b4, static_cast<double>(std::log(s4) / 3), 1e-13));
    // A finite eps(inf) = 0.3: the caps (e^{0.3} - 1)^j < 2 take over, and at j = 2 the second branch.
    const long double c = std::expm1(0.3L);
    const long double f4 = 1 + g * g * 6 * std::min(4 * std::expm1(e2), std::exp(e2) * c * c) +
                           4 * g * g * g * std::exp(2 * e3) * c * c * c + g * g * g * g * std::exp(3 * e4) * c * c * c * c;
    auto capped = FixedSizeSubsampledRdpBound(0.1, 4, base, 0.3);
    REQUIRE(capped.ok());
    CHECK(Near(*capped, static_cast<double>(std::log(f4) / 3), 1e-13));
    CHECK(*capped < *b4);
    // g = 1 is the mechanism itself, g = 0 releases nothing; and never above the base mechanism's RDP.
    for (uint32_t a : {2u, 7u, 40u}) {
      CHECK(*FixedSizeSubsampledRdpBound(1.0, a, base) == base(a));
      CHECK(*FixedSizeSubsampledRdpBound(0.0, a, base) == 0.0);
      CHECK(*FixedSizeSubsampledRdpBound(0.9, a, base) <= base(a));
    }
    // Between integer orders, the chord of K(a) = (a - 1) eps(a), with K(1) = 0.
    const std::vector<double> orders = {1.5, 3.25};
    auto at = FixedSizeSubsampledRdpBound(0.1, orders, base);
    REQUIRE(at.ok());
    const double b2 = *FixedSizeSubsampledRdpBound(0.1, 2, base);
    CHECK(Near((*at)[0], (0.5 * b2) / 0.5, 1e-15));
    CHECK(Near((*at)[1], (0.75 * 2 * *b3 + 0.25 * 3 * *b4) / 2.25, 1e-15));
    // Refusals.
    CHECK_FALSE(FixedSizeSubsampledRdpBound(0.1, 1, base).ok());
    CHECK_FALSE(FixedSizeSubsampledRdpBound(-0.1, 3, base).ok());
    CHECK_FALSE(FixedSizeSubsampledRdpBound(0.1, 3, [](uint32_t) { return std::nan(""); }).ok());
    CHECK_FALSE(FixedSizeSubsampledRdpBound(0.1, 3, base, -1.0).ok());
    CHECK(SamplingSchemeName(SamplingScheme::kFixedSize) == "fixed_size");
    CHECK(SamplingAdjacencyName(SamplingScheme::kFixedSize) == "replace_one");
    CHECK(SamplingAdjacencyName(SamplingScheme::kPoisson) == "add_remove_one");
  }

  TEST_CASE(
      "weighted Poisson selection: the subsampled Gaussian's RDP never falls as q grows, so a client included "
      "with p <= q_max spends at most the bound at q_max in either direction") {
    // The plain reference for one client at p: the Renyi divergence of (1 - p) N(0, z^2) + p N(1, z^2) from
    // N(0, z^2) and of N(0, z^2) from it, each by the trapezoid rule.
    auto divergences = [](double p, double s, double alpha) {
      const double lo = -40 * s, hi = 40 * s + alpha * s * s + 1, h = 1e-3 * s;
      const auto n = static_cast<long>((hi - lo) / h);
      double up = 0, down = 0;
      for (long i = 0; i <= n; ++i) {
        const double z = lo + static_cast<double>(i) * h;
        const double log_mu0 = -z * z / (2 * s * s) - 0.5 * std::log(2 * std::numbers::pi * s * s);
        const double log_ratio = std::log1p(p * std::expm1((2 * z - 1) / (2 * s * s)));
        const double w = i == 0 || i == n ? 0.5 : 1.0;
        up += w * std::exp(log_mu0 + alpha * log_ratio);
        down += w * std::exp(log_mu0 + (1 - alpha) * log_ratio);
      }
      return std::make_pair(std::log(up * h) / (alpha - 1), std::log(down * h) / (alpha - 1));
    };
    const std::vector<double> qs = {0.0005, 0.001, 0.004, 1.0 / 60, 1.0 / 30, 0.04, 0.1, 0.3, 0.7, 1.0};
    for (double z : {0.5, 1.0, 1.5, 3.0}) {
      for (double alpha : {1.5, 2.0, 3.0, 5.5, 8.0, 32.0, 63.0}) {
        double last = 0;
        for (double q : qs) {
          auto rdp = SubsampledGaussianRdp(q, z, alpha);
          REQUIRE(rdp.ok());
          CAPTURE(z);
          CAPTURE(alpha);
          CAPTURE(q);
          CHECK(*rdp >= last * (1 - 1e-12));
          last = *rdp;
        }
      }
    }
    // A round whose largest inclusion probability is 1/30 (cap 2 over a uniform 1/60): every client at a
    // p below it, both directions of its exact divergence, lies under the accountant's value at 1/30.
    for (double z : {0.7, 1.0, 1.5}) {
      for (double alpha : {2.0, 3.0, 5.0, 8.0}) {
        auto bound = SubsampledGaussianRdp(1.0 / 30, z, alpha);
        REQUIRE(bound.ok());
        for (double p : {0.001, 1.0 / 120, 1.0 / 60, 1.0 / 40, 1.0 / 30}) {
          const auto [up, down] = divergences(p, z, alpha);
          CAPTURE(z);
          CAPTURE(alpha);
          CAPTURE(p);
          CHECK(up <= *bound * (1 + 1e-6));
          CHECK(down <= *bound * (1 + 1e-6));
        }
        // At p = q_max the bound is the divergence itself (Mironov et al.'s A_alpha).
        CHECK(Near(divergences(1.0 / 30, z, alpha).first, *bound, 1e-6));
      }
    }
  }

  TEST_CASE("on the Gaussian the fixed-size bound lies above a pair of replace-one neighbours' exact divergence") {
    // Also in log space at large orders and small noise, where the plain sum would overflow.
    for (double g : {0.001, 1.0 / 60, 0.04, 0.3}) {
      for (double z : {0.7, 1.0, 1.5, 3.0}) {
        for (uint32_t a : {2u, 3u, 5u, 8u}) {
          auto bound = FixedSizeSubsampledRdpBound(g, a, [&](uint32_t j) { return GaussianReplaceOneRdp(z, j); });
          REQUIRE(bound.ok());
          const double pair = ReplaceOnePairDivergence(g, z, a);
          CAPTURE(g);
          CAPTURE(z);
          CAPTURE(a);
          CHECK(*bound >= pair * (1 - 1e-6));
          CHECK(*bound <= GaussianReplaceOneRdp(z, a));
        }
      }
    }
    auto far = FixedSizeSubsampledRdpBound(1.0 / 60, 63, [](uint32_t j) { return GaussianReplaceOneRdp(0.5, j); });
    REQUIRE(far.ok());
    CHECK(std::isfinite(*far));
    // The replace-one Gaussian RDP is four times the add/remove one: sensitivity 2C.
    CHECK(GaussianReplaceOneRdp(1.5, 3.0) == doctest::Approx(4 * GaussianRdp(1.5, 3.0)));
  }

  TEST_CASE("the fixed-size scheme composes, converts and plans with its own bound, not the Poisson one") {
    const double q = 1.0 / 60, z = 1.2;
    const std::vector<double> orders = DefaultRdpOrders();
    auto per_step = FixedSizeSubsampledRdpBound(q, orders, [&](uint32_t j) { return GaussianReplaceOneRdp(z, j); });
    REQUIRE(per_step.ok());
    auto rdp = ComputeRdp(SamplingScheme::kFixedSize, q, z, 40, orders);
    REQUIRE(rdp.ok());
    for (size_t i = 0; i < orders.size(); ++i) CHECK((*rdp)[i] == 40 * (*per_step)[i]);
    RdpAccountant fixed, poisson;
    REQUIRE(fixed.Compose(SamplingScheme::kFixedSize, q, z, 40).ok());
    REQUIRE(poisson.Compose(SamplingScheme::kPoisson, q, z, 40).ok());
    CHECK(fixed.rdp() == *rdp);
    CHECK(poisson.rdp() == *ComputeRdp(q, z, 40, orders));
    const double eps_fixed = SubsampledGaussianEpsilon(SamplingScheme::kFixedSize, q, z, 40, 1e-5)->epsilon;
    CHECK(eps_fixed == fixed.Spent(1e-5)->epsilon);
    // Replace-one adjacency costs more than add/remove at the same noise.
    CHECK(eps_fixed > poisson.Spent(1e-5)->epsilon);
    // The planning inverse under the fixed-size bound meets the target; a hair less noise does not.
    auto planned = NoiseMultiplierForEpsilon(SamplingScheme::kFixedSize, 2.0, q, 40, 1e-5);
    REQUIRE(planned.ok());
    CHECK(SubsampledGaussianEpsilon(SamplingScheme::kFixedSize, q, *planned, 40, 1e-5)->epsilon <= 2.0);
    CHECK(SubsampledGaussianEpsilon(SamplingScheme::kFixedSize, q, *planned * 0.99999, 40, 1e-5)->epsilon > 2.0);
    CHECK(*planned > *NoiseMultiplierForEpsilon(2.0, q, 40, 1e-5));
  }
}

}  // namespace
}  // namespace frugal::privacy
