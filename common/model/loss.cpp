#include "loss.h"

#include <algorithm>
#include <cmath>

#include "frugal/model/eigen.h"

namespace frugal::internal {

double SoftmaxCrossEntropy(const float* logits, size_t classes, size_t n, const int32_t* labels, float* scratch,
                           bool want_grad, float grad_scale, int32_t* predicted) {
  // Each column's exponentials go through Eigen's vectorised exp in chunks of
  // a fixed 16 lanes (padded), never its scalar tail, so an example's loss is
  // the same whatever batch it sits in and wherever in the batch: evaluation
  // does not depend on the batch size.
  constexpr size_t kChunk = 16;
  using Chunk = Eigen::Array<float, kChunk, 1>;
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) {
    const float* z = logits + j * classes;
    float* s = scratch + j * classes;
    size_t arg = 0;
    float m = z[0];
    for (size_t k = 1; k < classes; ++k) {
      if (z[k] > m) {
        m = z[k];
        arg = k;
      }
    }
    if (predicted != nullptr) predicted[j] = static_cast<int32_t>(arg);
    const auto label = static_cast<size_t>(labels[j]);
    total += static_cast<double>(m) - static_cast<double>(z[label]);
    // Sum in double keeps the loss accurate enough for finite-difference checks.
    double sum = 0.0;
    for (size_t k0 = 0; k0 < classes; k0 += kChunk) {
      const size_t len = std::min(kChunk, classes - k0);
      Chunk t = Chunk::Zero();
      for (size_t k = 0; k < len; ++k) t[static_cast<Eigen::Index>(k)] = z[k0 + k] - m;
      t = t.exp();
      for (size_t k = 0; k < len; ++k) {
        s[k0 + k] = t[static_cast<Eigen::Index>(k)];
        sum += static_cast<double>(s[k0 + k]);
      }
    }
    total += std::log(sum);
    if (want_grad) {
      const auto f = static_cast<float>(static_cast<double>(grad_scale) / sum);
      for (size_t k = 0; k < classes; ++k) s[k] *= f;
      s[label] -= grad_scale;
    }
  }
  return total;
}

}  // namespace frugal::internal
