// The forward product and the bias gradient of a dense layer, shared by the
// models. Private to the model module.
#pragma once

#include <cstddef>

#include "frugal/model/eigen.h"

namespace frugal::internal {

// z (out x n) = wt^T * a, with wt the (in x out) column-major weights and a the
// (in x n) inputs. When both out and n fit in one AVX-512 register (<= 16),
// Eigen's blocked GEMM leaves most of its kernel idle (a logistic regression
// at batch 10 runs at a third of GEMM speed); there, out*n dot products of
// contiguous columns are about 2.5x faster, measured.
template <typename Z, typename Wt, typename A>
inline void DenseForward(Z&& z, const Wt& wt, const A& a) {
  if (z.rows() <= 16 && z.cols() <= 16) {
    z.noalias() = wt.transpose().lazyProduct(a);
  } else {
    z.noalias() = wt.transpose() * a;
  }
}

// The bias gradient: the sum over the n columns of each row of d (rows x n,
// column-major), in column order, then out[j] = sum (accumulate false) or
// out[j] += alpha * sum. Not Eigen's rowwise().sum(): assigned into an
// arbitrary destination, it vectorises, and so rounds, differently by the
// destination's address, which made training depend on which buffer held the
// parameters (and so on the thread that ran a client).
inline void BiasGradient(const float* d, size_t rows, size_t n, float alpha, bool accumulate, float* out) {
  for (size_t j = 0; j < rows; ++j) {
    float s = 0.0f;
    for (size_t e = 0; e < n; ++e) s += d[e * rows + j];
    if (accumulate) out[j] += alpha * s; else out[j] = s;
  }
}

}  // namespace frugal::internal
