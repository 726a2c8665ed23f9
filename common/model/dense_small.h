// Kernels for dense layers with few outputs (logistic regression, an MLP's
// output layer). Eigen's GEMM packs both operands and pads the few output rows
// to its register block on every call, which at 10 outputs wastes most of the
// work; these register-blocked loops read each operand once per batch, in
// place. Private to the model module.
#pragma once

#include <cstddef>

namespace frugal::internal {

// Widest layer (outputs) the kernels below are used for.
inline constexpr size_t kSmallDenseMaxOut = 16;

// z[e*c + o] = (sum_k x[e*d + k] * w[o*d + k]) + b[o] for e < n, o < c: the
// pre-activations of n examples (rows of x) through a layer whose weights w
// are (c x d) row-major. z is (c x n) column-major, one example per column.
void SmallDenseForward(const float* x, size_t n, size_t d, const float* w, const float* b, size_t c, float* z);

// gw[o*d + k] = sum_e dz[e*c + o] * x[e*d + k] and gb[o] = sum_e dz[e*c + o],
// summed in example order: the weight and bias gradients of the same layer
// given dz = d(loss)/dz, (c x n) column-major. Overwrites gw and gb.
void SmallDenseGradient(const float* x, size_t n, size_t d, const float* dz, size_t c, float* gw, float* gb);

// The same gradient, applied instead of stored: w[o*d + k] += alpha * gw[o*d + k]
// and b[o] += alpha * gb[o] (alpha = -learning rate: an SGD step in place).
void SmallDenseGradientStep(const float* x, size_t n, size_t d, const float* dz, size_t c, float alpha, float* w,
                            float* b);

}  // namespace frugal::internal
