#include "conv.h"

#include <algorithm>
#include <cstring>

namespace frugal::internal {

void Im2Col(const float* in, size_t n, size_t h, size_t w, size_t c, size_t k, float* cols) {
  const ptrdiff_t pad = static_cast<ptrdiff_t>(k / 2);
  const size_t kkc = k * k * c;
  for (size_t e = 0; e < n; ++e) {
    const float* img = in + e * h * w * c;
    for (size_t y = 0; y < h; ++y) {
      for (size_t x = 0; x < w; ++x) {
        float* col = cols + ((e * h + y) * w + x) * kkc;
        for (size_t ky = 0; ky < k; ++ky) {
          const ptrdiff_t iy = static_cast<ptrdiff_t>(y + ky) - pad;
          float* dst = col + ky * k * c;
          if (iy < 0 || iy >= static_cast<ptrdiff_t>(h)) {
            std::memset(dst, 0, k * c * sizeof(float));
            continue;
          }
          for (size_t kx = 0; kx < k; ++kx) {
            const ptrdiff_t ix = static_cast<ptrdiff_t>(x + kx) - pad;
            if (ix < 0 || ix >= static_cast<ptrdiff_t>(w)) {
              std::memset(dst + kx * c, 0, c * sizeof(float));
            } else {
              std::memcpy(dst + kx * c, img + (static_cast<size_t>(iy) * w + static_cast<size_t>(ix)) * c,
                          c * sizeof(float));
            }
          }
        }
      }
    }
  }
}

void Col2Im(const float* cols, size_t n, size_t h, size_t w, size_t c, size_t k, float* out) {
  const ptrdiff_t pad = static_cast<ptrdiff_t>(k / 2);
  const size_t kkc = k * k * c;
  std::fill(out, out + n * h * w * c, 0.0f);
  for (size_t e = 0; e < n; ++e) {
    float* img = out + e * h * w * c;
    for (size_t y = 0; y < h; ++y) {
      for (size_t x = 0; x < w; ++x) {
        const float* col = cols + ((e * h + y) * w + x) * kkc;
        for (size_t ky = 0; ky < k; ++ky) {
          const ptrdiff_t iy = static_cast<ptrdiff_t>(y + ky) - pad;
          if (iy < 0 || iy >= static_cast<ptrdiff_t>(h)) continue;
          for (size_t kx = 0; kx < k; ++kx) {
            const ptrdiff_t ix = static_cast<ptrdiff_t>(x + kx) - pad;
            if (ix < 0 || ix >= static_cast<ptrdiff_t>(w)) continue;
            float* dst = img + (static_cast<size_t>(iy) * w + static_cast<size_t>(ix)) * c;
            const float* src = col + (ky * k + kx) * c;
            for (size_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
          }
        }
      }
    }
  }
}

void MaxPool(const float* in, size_t n, size_t h, size_t w, size_t c, size_t k, float* out, uint32_t* idx) {
  const size_t ph = h / k, pw = w / k;
  for (size_t e = 0; e < n; ++e) {
    for (size_t y = 0; y < ph; ++y) {
      for (size_t x = 0; x < pw; ++x) {
        const size_t o = ((e * ph + y) * pw + x) * c;
        const size_t base = ((e * h + k * y) * w + k * x) * c;
        for (size_t ch = 0; ch < c; ++ch) {
          size_t best = base + ch;
          for (size_t ky = 0; ky < k; ++ky) {
            for (size_t kx = 0; kx < k; ++kx) {
              const size_t cand = base + (ky * w + kx) * c + ch;
              if (in[cand] > in[best]) best = cand;
            }
          }
          out[o + ch] = in[best];
          idx[o + ch] = static_cast<uint32_t>(best);
        }
      }
    }
  }
}

void MaxPoolBackward(const float* dout, const uint32_t* idx, size_t pooled, const float* act, size_t in_size,
                     float* din) {
  std::fill(din, din + in_size, 0.0f);
  for (size_t i = 0; i < pooled; ++i) din[idx[i]] = dout[i];
  if (act == nullptr) return;
  for (size_t i = 0; i < in_size; ++i) {
    if (!(act[i] > 0.0f)) din[i] = 0.0f;
  }
}

}  // namespace frugal::internal
