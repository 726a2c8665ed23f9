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

// Plain reference for block top-k: block sums of |x| in double, blocks sorted by (sum
// descending, block ascending), the first `blocks` with a non-zero sum, their non-zeros.
std::vector<uint32_t> NaiveTopKBlocks(const std::vector<float>& x, size_t block, size_t blocks) {
  const size_t n = (x.size() + block - 1) / block;
  std::vector<double> sum(n, 0.0);
  for (size_t i = 0; i < x.size(); ++i) sum[i / block] += std::fabs(x[i]);
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return static_cast<float>(sum[a]) > static_cast<float>(sum[b]);
  });
  order.resize(std::min(blocks, n));
  std::erase_if(order, [&](uint32_t b) { return sum[b] == 0.0; });
  std::sort(order.begin(), order.end());
  std::vector<uint32_t> out;
  for (uint32_t b : order) {
    for (size_t i = b * block; i < std::min(x.size(), (b + 1) * block); ++i) {
      if (x[i] != 0.0f) out.push_back(static_cast<uint32_t>(i));
    }
  }
  return out;
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

  TEST_CASE("block top-k keeps the blocks of largest summed magnitude, as a plain sort of block sums does") {
    for (size_t d : {10ul, 1001ul, 100003ul}) {  // sizes that leave a short last block
      std::vector<float> x = codec_test::Gaussian(d, d + 1);
      for (size_t i = 0; i < d; i += 7) x[i] = std::round(x[i] * 4.0f) / 4.0f;
      for (size_t i = 0; i < d; i += 13) x[i] = 0.0f;
      for (size_t block : {2ul, 3ul, 4ul, 16ul}) {
        for (double p : {0.001, 0.01, 0.3}) {
          const size_t blocks = std::max<size_t>(1, static_cast<size_t>(p * static_cast<double>(d) / block));
          const std::vector<uint32_t> got = TopKBlocks(x, block, blocks);
          CHECK(got == NaiveTopKBlocks(x, block, blocks));
          for (uint32_t i : got) CHECK(x[i] != 0.0f);
        }
      }
      CHECK(TopKBlocks(x, 1, d / 10) == TopKExact(x, d / 10));
    }
  }

  TEST_CASE("block top-k: equal block sums go to the lower block, empty blocks are never kept") {
    // Blocks of 4: block 0 sums 2 (one entry), block 1 sums 2 (two entries), block 2 is empty,
    // block 3 sums 3, and the last block (index 16, alone) sums 2.
    std::vector<float> x(17, 0.0f);
    x[1] = -2.0f;
    x[4] = 1.0f;
    x[7] = -1.0f;
    x[13] = 3.0f;
    x[16] = 2.0f;
    CHECK(TopKBlocks(x, 4, 1) == std::vector<uint32_t>{13});
    CHECK(TopKBlocks(x, 4, 2) == std::vector<uint32_t>{1, 13});
    CHECK(TopKBlocks(x, 4, 3) == std::vector<uint32_t>{1, 4, 7, 13});
    CHECK(TopKBlocks(x, 4, 4) == std::vector<uint32_t>{1, 4, 7, 13, 16});
    CHECK(TopKBlocks(x, 4, 5) == std::vector<uint32_t>{1, 4, 7, 13, 16});  // block 2 (all zero) never
    CHECK(TopKBlocks(x, 4, 0).empty());
    CHECK(TopKBlocks(std::vector<float>(9, 0.0f), 4, 3).empty());
  }
}

}  // namespace
}  // namespace frugal
