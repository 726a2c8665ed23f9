#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "codec/test_util.h"
#include "frugal/codec/topk.h"

namespace frugal {
namespace {

// Plain reference: sort all indices by (|x| descending, index ascending), keep k non-zeros.
std::vector<uint32_t> NaiveTopK(const std::vector<float>& x, size_t k) {
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  order.resize(std::min(k, order.size()));
  std::erase_if(order, [&](uint32_t i) { return x[i] == 0.0f; });
  std::sort(order.begin(), order.end());
  return order;
}

TEST_SUITE("codec") {
  TEST_CASE("exact and sampled top-k agree with a full sort, ties included") {
    for (size_t d : {10ul, 1000ul, 100000ul, 400000ul}) {
      std::vector<float> x = codec_test::Gaussian(d, d);
      // Quantize some entries so that magnitudes tie, and zero a few.
      for (size_t i = 0; i < d; i += 7) x[i] = std::round(x[i] * 4.0f) / 4.0f;
      for (size_t i = 0; i < d; i += 13) x[i] = 0.0f;
      for (double p : {0.001, 0.01, 0.1, 0.5}) {
        const size_t k = std::max<size_t>(1, static_cast<size_t>(p * static_cast<double>(d)));
        const std::vector<uint32_t> ref = NaiveTopK(x, k);
        CHECK(TopKExact(x, k) == ref);
        CHECK(TopKSampled(x, k, 9) == ref);
      }
    }
  }

  TEST_CASE("top-k never selects zeros and handles k beyond the size") {
    std::vector<float> x(5000, 0.0f);
    x[17] = -3.0f;
    x[4000] = 2.0f;
    const std::vector<uint32_t> want = {17, 4000};
    CHECK(TopKExact(x, 100) == want);
    CHECK(TopKSampled(x, 100) == want);
    CHECK(TopKExact(x, 1) == std::vector<uint32_t>{17});
    CHECK(TopKExact(x, 0).empty());
    CHECK(TopKExact(std::vector<float>{1.0f, -2.0f}, 10) == std::vector<uint32_t>{0, 1});
  }
}

}  // namespace
}  // namespace frugal
