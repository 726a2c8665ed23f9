#include "loss.h"

#include <cmath>

#include "frugal/model/eigen.h"

namespace frugal::internal {

double SoftmaxCrossEntropy(const float* logits, size_t classes, size_t n, const int32_t* labels, float* scratch,
                           bool want_grad, float grad_scale, int32_t* predicted) {
  const auto c = static_cast<Eigen::Index>(classes);
  const auto cols = static_cast<Eigen::Index>(n);
  Eigen::Map<const Eigen::MatrixXf> z(logits, c, cols);
  Eigen::Map<Eigen::MatrixXf> s(scratch, c, cols);
  // Shift each column by its max, then one vectorised exp over the whole
  // block: per-column exp over a handful of classes would run scalar.
  double total = 0.0;
  for (Eigen::Index j = 0; j < cols; ++j) {
    Eigen::Index arg = 0;
    const float m = z.col(j).maxCoeff(&arg);
    if (predicted != nullptr) predicted[j] = static_cast<int32_t>(arg);
    s.col(j).array() = z.col(j).array() - m;
    total += static_cast<double>(m) - static_cast<double>(z(labels[j], j));
  }
  Eigen::Map<Eigen::ArrayXf> flat(scratch, c * cols);
  flat = flat.exp();
  for (Eigen::Index j = 0; j < cols; ++j) {
    // Sum in double keeps the loss accurate enough for finite-difference checks.
    const double sum = s.col(j).cast<double>().sum();
    total += std::log(sum);
    if (want_grad) {
      s.col(j) *= static_cast<float>(static_cast<double>(grad_scale) / sum);
      s(labels[j], j) -= grad_scale;
    }
  }
  return total;
}

}  // namespace frugal::internal
