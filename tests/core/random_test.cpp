#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "frugal/core/random.h"

namespace frugal {
namespace {

TEST_SUITE("core") {
  TEST_CASE("the generator is reproducible for a seed and differs across seeds") {
    Rng a(7), b(7), c(8);
    for (int i = 0; i < 100; ++i) {
      const uint64_t x = a.NextU64();
      CHECK(x == b.NextU64());
      CHECK(x != c.NextU64());
    }
  }

  TEST_CASE("uniform, normal and gamma draws have the right first two moments") {
    Rng rng(1);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0, sg = 0;
    std::vector<int> counts(10, 0);
    for (int i = 0; i < n; ++i) {
      su += rng.Uniform();
      const double z = rng.Normal();
      sn += z;
      sn2 += z * z;
      sg += rng.Gamma(0.5);
      counts[rng.UniformInt(10)]++;
    }
    CHECK(su / n == doctest::Approx(0.5).epsilon(0.01));
    CHECK(std::abs(sn / n) < 0.01);
    CHECK(sn2 / n == doctest::Approx(1.0).epsilon(0.02));
    CHECK(sg / n == doctest::Approx(0.5).epsilon(0.02));  // mean of Gamma(k,1) is k
    for (int k : counts) CHECK(k == doctest::Approx(n / 10).epsilon(0.03));
  }
}

}  // namespace
}  // namespace frugal
