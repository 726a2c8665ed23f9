#include "frugal/privacy/accountant.h"

#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
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
}

}  // namespace
}  // namespace frugal::privacy
