// Softmax cross-entropy over a column-major (classes x n) block of logits,
// shared by the models. Private to the model module.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frugal::internal {

// Returns the SUM over the n columns of -log softmax(logits)[label].
// scratch (classes x n, may not alias logits) is overwritten: with
// (softmax - onehot) * grad_scale if want_grad, else with unspecified values.
// If predicted is non-null it receives each column's argmax (first on ties).
double SoftmaxCrossEntropy(const float* logits, size_t classes, size_t n, const int32_t* labels, float* scratch,
                           bool want_grad, float grad_scale, int32_t* predicted);

// Grows v to at least n elements; never shrinks, so reuse allocates nothing.
template <typename Vec>
inline typename Vec::value_type* Grow(Vec& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace frugal::internal
