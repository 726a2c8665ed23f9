#include "loss.h"

#include "frugal/model/eigen.h"
#include <cmath>

namespace frugal::internal {

double SoftmaxCrossEntropy(const float* logits, size_t classes, size_t n, const int32_t* labels, float* dlogits,
                           float grad_scale, int32_t* predicted) {
  const auto c = static_cast<Eigen::Index>(classes);
  double total = 0.0;
  for (size_t j = 0; j < n; ++j) {
    Eigen::Map<const Eigen::ArrayXf> z(logits + j * classes, c);
    Eigen::Index arg = 0;
    const float m = z.maxCoeff(&arg);
    // Sum of exp in double keeps the loss accurate enough for finite differences.
    const double sum = (z - m).exp().cast<double>().sum();
    const double lse = static_cast<double>(m) + std::log(sum);
    total += lse - static_cast<double>(z[labels[j]]);
    if (dlogits != nullptr) {
      Eigen::Map<Eigen::ArrayXf> d(dlogits + j * classes, c);
      d = (z - static_cast<float>(lse)).exp() * grad_scale;
      d[labels[j]] -= grad_scale;
    }
    if (predicted != nullptr) predicted[j] = static_cast<int32_t>(arg);
  }
  return total;
}

}  // namespace frugal::internal
