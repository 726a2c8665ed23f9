#include "dense_small.h"

#include <cstring>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace frugal::internal {
namespace {

// One SIMD register of floats through GCC/Clang vector extensions: 8 lanes
// where AVX exists, else 4 (SSE, NEON), so no vector is wider than the ISA.
#if defined(__AVX__)
constexpr size_t kLanes = 8;
#else
constexpr size_t kLanes = 4;
#endif
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
inline Vec Splat(float s) { return Vec{} + s; }
inline Vec MulAdd(Vec a, Vec b, Vec c) {
#if defined(__AVX__) && defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}
// Lanes summed in a fixed order, so results never depend on the call site.
inline float Sum(Vec v) {
  float s = 0.0f;
  for (size_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// Register block of the forward kernel: E examples x O outputs accumulators,
// plus E inputs and one weight vector live: 2 x 5 fits 16 registers.
constexpr size_t kFwdE = 2, kFwdO = 5;

template <size_t E, size_t O>
void ForwardBlock(const float* x, size_t d, const float* w, const float* b, size_t c, float* z) {
  Vec acc[E][O] = {};
  size_t k = 0;
  for (; k + kLanes <= d; k += kLanes) {
    Vec xv[E];
    #pragma GCC unroll 16
    for (size_t e = 0; e < E; ++e) xv[e] = Load(x + e * d + k);
    #pragma GCC unroll 16
    for (size_t o = 0; o < O; ++o) {
      const Vec wv = Load(w + o * d + k);
      #pragma GCC unroll 16
      for (size_t e = 0; e < E; ++e) acc[e][o] = MulAdd(xv[e], wv, acc[e][o]);
    }
  }
  for (size_t e = 0; e < E; ++e) {
    for (size_t o = 0; o < O; ++o) {
      float s = Sum(acc[e][o]);
      for (size_t j = k; j < d; ++j) s += x[e * d + j] * w[o * d + j];
      z[e * c + o] = s + b[o];
    }
  }
}

template <size_t E>
void ForwardRow(const float* x, size_t d, const float* w, const float* b, size_t c, float* z) {
  size_t o = 0;
  for (; o + kFwdO <= c; o += kFwdO) ForwardBlock<E, kFwdO>(x, d, w + o * d, b + o, c, z + o);
  switch (c - o) {
    case 4: ForwardBlock<E, 4>(x, d, w + o * d, b + o, c, z + o); break;
    case 3: ForwardBlock<E, 3>(x, d, w + o * d, b + o, c, z + o); break;
    case 2: ForwardBlock<E, 2>(x, d, w + o * d, b + o, c, z + o); break;
    case 1: ForwardBlock<E, 1>(x, d, w + o * d, b + o, c, z + o); break;
    default: break;
  }
}

// Register block of the gradient kernel: O outputs x V vectors of weights
// (V * kLanes consecutive inputs), plus V inputs and one broadcast live.
constexpr size_t kGradO = 5, kGradV = 2;

// Where a gradient block goes: stored (kStore), or scaled by alpha and added
// to the weights it belongs to (kStep).
enum class Out { kStore, kStep };

template <Out kOut, size_t O, size_t V>
void GradientBlock(const float* x, size_t n, size_t d, const float* dz, size_t c, float alpha, float* gw) {
  Vec acc[O][V] = {};
  for (size_t e = 0; e < n; ++e) {
    Vec xv[V];
    #pragma GCC unroll 16
    for (size_t v = 0; v < V; ++v) xv[v] = Load(x + e * d + v * kLanes);
    #pragma GCC unroll 16
    for (size_t o = 0; o < O; ++o) {
      const Vec g = Splat(dz[e * c + o]);
      #pragma GCC unroll 16
      for (size_t v = 0; v < V; ++v) acc[o][v] = MulAdd(g, xv[v], acc[o][v]);
    }
  }
  for (size_t o = 0; o < O; ++o) {
    for (size_t v = 0; v < V; ++v) {
      float* p = gw + o * d + v * kLanes;
      if constexpr (kOut == Out::kStore) {
        Store(p, acc[o][v]);
      } else {
        Store(p, Load(p) + Splat(alpha) * acc[o][v]);
      }
    }
  }
}

template <Out kOut, size_t O>
void GradientOutputs(const float* x, size_t n, size_t d, const float* dz, size_t c, float alpha, float* gw) {
  size_t k = 0;
  for (; k + kGradV * kLanes <= d; k += kGradV * kLanes) {
    GradientBlock<kOut, O, kGradV>(x + k, n, d, dz, c, alpha, gw + k);
  }
  for (; k + kLanes <= d; k += kLanes) GradientBlock<kOut, O, 1>(x + k, n, d, dz, c, alpha, gw + k);
  for (; k < d; ++k) {
    for (size_t o = 0; o < O; ++o) {
      float s = 0.0f;
      for (size_t e = 0; e < n; ++e) s += dz[e * c + o] * x[e * d + k];
      if constexpr (kOut == Out::kStore) {
        gw[o * d + k] = s;
      } else {
        gw[o * d + k] += alpha * s;
      }
    }
  }
}

template <Out kOut>
void Gradient(const float* x, size_t n, size_t d, const float* dz, size_t c, float alpha, float* gw, float* gb) {
  size_t o = 0;
  for (; o + kGradO <= c; o += kGradO) GradientOutputs<kOut, kGradO>(x, n, d, dz + o, c, alpha, gw + o * d);
  switch (c - o) {
    case 4: GradientOutputs<kOut, 4>(x, n, d, dz + o, c, alpha, gw + o * d); break;
    case 3: GradientOutputs<kOut, 3>(x, n, d, dz + o, c, alpha, gw + o * d); break;
    case 2: GradientOutputs<kOut, 2>(x, n, d, dz + o, c, alpha, gw + o * d); break;
    case 1: GradientOutputs<kOut, 1>(x, n, d, dz + o, c, alpha, gw + o * d); break;
    default: break;
  }
  for (size_t j = 0; j < c; ++j) {
    float s = 0.0f;
    for (size_t e = 0; e < n; ++e) s += dz[e * c + j];
    if constexpr (kOut == Out::kStore) {
      gb[j] = s;
    } else {
      gb[j] += alpha * s;
    }
  }
}

}  // namespace

void SmallDenseForward(const float* x, size_t n, size_t d, const float* w, const float* b, size_t c, float* z) {
  size_t e = 0;
  for (; e + kFwdE <= n; e += kFwdE) ForwardRow<kFwdE>(x + e * d, d, w, b, c, z + e * c);
  for (; e < n; ++e) ForwardRow<1>(x + e * d, d, w, b, c, z + e * c);
}

void SmallDenseGradient(const float* x, size_t n, size_t d, const float* dz, size_t c, float* gw, float* gb) {
  Gradient<Out::kStore>(x, n, d, dz, c, 0.0f, gw, gb);
}

void SmallDenseGradientStep(const float* x, size_t n, size_t d, const float* dz, size_t c, float alpha, float* w,
                            float* b) {
  Gradient<Out::kStep>(x, n, d, dz, c, alpha, w, b);
}

}  // namespace frugal::internal
