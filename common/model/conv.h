// The convolution and pooling kernels of the image models (Cnn and layer
// lists run by Sequential): 'same'-padded patches to columns and back, and
// max pooling with the winners recorded for the backward pass. Images are
// height x width x channels, channel fastest (HWC), one after another.
// Private to the model module.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frugal::internal {

// Patches of a 'same' convolution: n images of h x w x c -> a (k*k*c) x
// (n*h*w) column-major matrix, one column per output pixel, rows ordered
// (ky, kx, channel) with channel fastest; zero outside the image.
void Im2Col(const float* in, size_t n, size_t h, size_t w, size_t c, size_t k, float* cols);

// Adjoint of Im2Col: sums each patch gradient back into the image gradient
// (overwrites out, n*h*w*c values).
void Col2Im(const float* cols, size_t n, size_t h, size_t w, size_t c, size_t k, float* out);

// k x k max pooling, stride k (trailing rows and columns that do not fill a
// window dropped): out is n images of (h/k) x (w/k) x c. idx records which
// input element won (the first in (ky, kx) order on ties), for the backward pass.
void MaxPool(const float* in, size_t n, size_t h, size_t w, size_t c, size_t k, float* out, uint32_t* idx);

// Routes pooled gradients dout (pooled values) to the winning inputs, zero
// elsewhere (din holds in_size values). If act is non-null, then applies the
// ReLU mask of the post-ReLU activations act that were pooled (din = 0 where
// act <= 0): the fused backward of relu-then-pool.
void MaxPoolBackward(const float* dout, const uint32_t* idx, size_t pooled, const float* act, size_t in_size,
                     float* din);

}  // namespace frugal::internal
