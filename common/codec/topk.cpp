#include "frugal/codec/topk.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "frugal/core/random.h"

namespace frugal {
namespace {

// Given the k-th largest magnitude t among `x`, emits in index order every entry with
// |x| > t and the lowest-indexed entries with |x| == t until k are taken (none if t == 0).
std::vector<uint32_t> CollectAbove(std::span<const float> x, std::span<const uint32_t> candidates, size_t k,
                                   float t, size_t n_greater) {
  std::vector<uint32_t> out;
  out.reserve(std::min(k, n_greater + k));
  size_t ties = (t > 0.0f && k > n_greater) ? k - n_greater : 0;
  auto visit = [&](uint32_t i) {
    const float a = std::fabs(x[i]);
    if (a > t) {
      out.push_back(i);
    } else if (a == t && ties > 0) {
      out.push_back(i);
      --ties;
    }
  };
  if (candidates.empty()) {
    for (uint32_t i = 0; i < x.size(); ++i) visit(i);
  } else {
    for (uint32_t i : candidates) visit(i);
  }
  return out;
}

}  // namespace

std::vector<uint32_t> TopKExact(std::span<const float> x, size_t k) {
  k = std::min(k, x.size());
  if (k == 0) return {};
  std::vector<float> mags(x.size());
  for (size_t i = 0; i < x.size(); ++i) mags[i] = std::fabs(x[i]);
  std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(k - 1), mags.end(), std::greater<float>());
  const float t = mags[k - 1];
  size_t n_greater = 0;
  for (float a : x) n_greater += std::fabs(a) > t ? 1 : 0;
  return CollectAbove(x, {}, k, t, n_greater);
}

std::vector<uint32_t> TopKSampled(std::span<const float> x, size_t k, uint64_t seed) {
  const size_t d = x.size();
  k = std::min(k, d);
  if (k == 0) return {};
  constexpr size_t kSample = 8192;
  if (d <= 4 * kSample) return TopKExact(x, k);
  // Aim the threshold at about 1.3k + 4 sigma survivors so one pass almost always suffices.
  const double expected = static_cast<double>(k) * kSample / static_cast<double>(d);
  const size_t rank = static_cast<size_t>(std::ceil(1.3 * expected + 4.0 * std::sqrt(expected) + 4.0));
  if (rank >= kSample / 2) return TopKExact(x, k);
  std::vector<float> sample(kSample);
  Rng rng(DeriveSeed(seed, d));
  for (float& s : sample) s = std::fabs(x[rng.UniformInt(d)]);
  std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank), sample.end(),
                   std::greater<float>());
  const float t0 = sample[rank];
  std::vector<uint32_t> candidates;
  candidates.reserve(2 * k + 64);
  for (uint32_t i = 0; i < d; ++i) {
    if (std::fabs(x[i]) >= t0) candidates.push_back(i);
  }
  if (candidates.size() < k) return TopKExact(x, k);
  // Every non-candidate is below t0 <= the k-th largest candidate, so the k-th largest
  // magnitude overall is the k-th largest among candidates.
  std::vector<float> mags(candidates.size());
  for (size_t j = 0; j < candidates.size(); ++j) mags[j] = std::fabs(x[candidates[j]]);
  std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(k - 1), mags.end(), std::greater<float>());
  const float t = mags[k - 1];
  size_t n_greater = 0;
  for (uint32_t i : candidates) n_greater += std::fabs(x[i]) > t ? 1 : 0;
  return CollectAbove(x, candidates, k, t, n_greater);
}

std::vector<uint32_t> TopKBlocks(std::span<const float> x, size_t block, size_t blocks) {
  if (block <= 1) return TopKExact(x, blocks);
  const size_t n = (x.size() + block - 1) / block;
  std::vector<float> score(n, 0.0f);
  for (size_t b = 0; b < n; ++b) {
    double sum = 0;
    for (size_t i = b * block; i < std::min(x.size(), (b + 1) * block); ++i) sum += std::fabs(x[i]);
    score[b] = static_cast<float>(sum);
  }
  std::vector<uint32_t> out;
  for (uint32_t b : TopKExact(score, blocks)) {
    for (size_t i = b * block; i < std::min(x.size(), (b + 1) * block); ++i) {
      if (x[i] != 0.0f) out.push_back(static_cast<uint32_t>(i));
    }
  }
  return out;
}

}  // namespace frugal
