// The int8 GEMM kernels of frugal/model/int8.h. Each SIMD kernel is compiled
// only when the compiler target has its instructions (-march=native on the
// build machine, the arm64 preset's baseline on devices), so the choice is
// made at compile time and every compiled one is listed for the tests.
#include <array>
#include <cstddef>
#include <cstdint>

#include "frugal/model/int8.h"

#if defined(__AVX2__) || defined(__AVX512VNNI__) || defined(__AVXVNNI__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports "used uninitialized" inside its own AVX-512 intrinsics
// (_mm512_reduce_add_epi32, lane extracts): GCC bug 105593, as CMakeLists.txt
// notes for Eigen's kernels.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace frugal {
namespace {

void GemmReference(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
                   size_t ldc) {
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      int32_t s = 0;
      for (size_t p = 0; p < k; ++p) s += static_cast<int32_t>(a[i * lda + p]) * static_cast<int32_t>(w[j * ldw + p]);
      c[i * ldc + j] = s;
    }
  }
}

// The scalar tail of one dot product, from p0 to k.
inline int32_t DotTail(const uint8_t* a, const int8_t* w, size_t p0, size_t k) {
  int32_t s = 0;
  for (size_t p = p0; p < k; ++p) s += static_cast<int32_t>(a[p]) * static_cast<int32_t>(w[p]);
  return s;
}

#if defined(__AVX2__)
inline int32_t HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}
inline int32_t HorizontalSum(__m128i s) {
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Multiply-accumulate of 32 (or 16) u8 x s8 pairs into int32 lanes. The AVX2
// form goes through int16 pair sums (maddubs), exact because a <= 127 and
// |w| <= 127 keep each pair sum within 2 * 127 * 127 = 32258.
struct Avx2Madd {
  static __m256i Mac(__m256i acc, __m256i a, __m256i w) {
    const __m256i pairs = _mm256_maddubs_epi16(a, w);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static __m128i Mac(__m128i acc, __m128i a, __m128i w) {
    const __m128i pairs = _mm_maddubs_epi16(a, w);
    return _mm_add_epi32(acc, _mm_madd_epi16(pairs, _mm_set1_epi16(1)));
  }
};
#if defined(__AVXVNNI__)
struct AvxVnniMadd {
  static __m256i Mac(__m256i acc, __m256i a, __m256i w) { return _mm256_dpbusd_avx_epi32(acc, a, w); }
  static __m128i Mac(__m128i acc, __m128i a, __m128i w) { return _mm_dpbusd_avx_epi32(acc, a, w); }
};
#endif

// One activation row against four weight rows at a time (each activation load
// serves four products), 32 bytes a step, then 16, then scalar.
template <typename Madd>
void Gemm256(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
             size_t ldc) {
  const size_t k32 = k & ~size_t{31};
  const size_t k16 = k & ~size_t{15};
  for (size_t i = 0; i < m; ++i) {
    const uint8_t* ar = a + i * lda;
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const int8_t* w0 = w + j * ldw;
      const int8_t* w1 = w0 + ldw;
      const int8_t* w2 = w1 + ldw;
      const int8_t* w3 = w2 + ldw;
      __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
      for (size_t p = 0; p < k32; p += 32) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + p));
        s0 = Madd::Mac(s0, av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + p)));
        s1 = Madd::Mac(s1, av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + p)));
        s2 = Madd::Mac(s2, av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w2 + p)));
        s3 = Madd::Mac(s3, av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w3 + p)));
      }
      int32_t r0 = HorizontalSum(s0), r1 = HorizontalSum(s1), r2 = HorizontalSum(s2), r3 = HorizontalSum(s3);
      if (k16 > k32) {
        const __m128i av = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ar + k32));
        const __m128i z = _mm_setzero_si128();
        r0 += HorizontalSum(Madd::Mac(z, av, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + k32))));
        r1 += HorizontalSum(Madd::Mac(z, av, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + k32))));
        r2 += HorizontalSum(Madd::Mac(z, av, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w2 + k32))));
        r3 += HorizontalSum(Madd::Mac(z, av, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w3 + k32))));
      }
      c[i * ldc + j] = r0 + DotTail(ar, w0, k16, k);
      c[i * ldc + j + 1] = r1 + DotTail(ar, w1, k16, k);
      c[i * ldc + j + 2] = r2 + DotTail(ar, w2, k16, k);
      c[i * ldc + j + 3] = r3 + DotTail(ar, w3, k16, k);
    }
    for (; j < n; ++j) {
      const int8_t* wr = w + j * ldw;
      __m256i s = _mm256_setzero_si256();
      for (size_t p = 0; p < k32; p += 32) {
        s = Madd::Mac(s, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + p)),
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + p)));
      }
      int32_t r = HorizontalSum(s);
      if (k16 > k32) {
        r += HorizontalSum(Madd::Mac(_mm_setzero_si128(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(ar + k32)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + k32))));
      }
      c[i * ldc + j] = r + DotTail(ar, wr, k16, k);
    }
  }
}

void GemmAvx2(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
              size_t ldc) {
  Gemm256<Avx2Madd>(a, lda, w, ldw, m, n, k, c, ldc);
}
#if defined(__AVXVNNI__)
void GemmAvxVnni(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
                 size_t ldc) {
  Gemm256<AvxVnniMadd>(a, lda, w, ldw, m, n, k, c, ldc);
}
#endif
#endif  // __AVX2__

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// The four sums of four accumulators, in order: interleave and add within
// 128-bit lanes first (each add then serves two accumulators), then fold the
// four lanes.
inline __m128i Reduce4(__m512i s0, __m512i s1, __m512i s2, __m512i s3) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(s0, s1), _mm512_unpackhi_epi32(s0, s1));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(s2, s3), _mm512_unpackhi_epi32(s2, s3));
  // Per 128-bit lane: [s0, s1, s2, s3] partial sums.
  const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
  const __m512i v = _mm512_add_epi32(u, _mm512_shuffle_i64x2(u, u, 0x4E));  // lanes 0+2, 1+3
  const __m512i x = _mm512_add_epi32(v, _mm512_shuffle_i64x2(v, v, 0xB1));  // all four
  return _mm512_castsi512_si128(x);
}

// R activation rows against four weight rows: 4R accumulators, R + 4 loads
// per 4R dot-product instructions. 64 bytes a step; the tail is one masked
// step (zeros past k, and a masked load never faults), so no scalar loop.
template <size_t R>
inline void Block512(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t k, int32_t* c, size_t ldc) {
  const size_t k64 = k & ~size_t{63};
  __m512i s[R][4];
  for (size_t r = 0; r < R; ++r) {
    for (size_t q = 0; q < 4; ++q) s[r][q] = _mm512_setzero_si512();
  }
  auto step = [&]<bool kMasked>(size_t p, __mmask64 mask) {
    auto load = [mask](const void* ptr) {
      if constexpr (kMasked) return _mm512_maskz_loadu_epi8(mask, ptr);
      else {
        (void)mask;  // only the masked tail reads it
        return _mm512_loadu_si512(ptr);
      }
    };
    __m512i x[R];
    for (size_t r = 0; r < R; ++r) x[r] = load(a + r * lda + p);
    for (size_t q = 0; q < 4; ++q) {
      const __m512i v = load(w + q * ldw + p);
      for (size_t r = 0; r < R; ++r) s[r][q] = _mm512_dpbusd_epi32(s[r][q], x[r], v);
    }
  };
  for (size_t p = 0; p < k64; p += 64) step.template operator()<false>(p, 0);
  if (k > k64) step.template operator()<true>(k64, ~__mmask64{0} >> (64 - (k - k64)));
  for (size_t r = 0; r < R; ++r) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c + r * ldc), Reduce4(s[r][0], s[r][1], s[r][2], s[r][3]));
  }
}

void GemmAvx512Vnni(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k,
                    int32_t* c, size_t ldc) {
  const size_t k64 = k & ~size_t{63};
  const __mmask64 tail = ~__mmask64{0} >> (64 - (k - k64) % 64);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    size_t i = 0;
    for (; i + 4 <= m; i += 4) Block512<4>(a + i * lda, lda, w + j * ldw, ldw, k, c + i * ldc + j, ldc);
    for (; i < m; ++i) Block512<1>(a + i * lda, lda, w + j * ldw, ldw, k, c + i * ldc + j, ldc);
  }
  for (; j < n; ++j) {
    const int8_t* wr = w + j * ldw;
    for (size_t i = 0; i < m; ++i) {
      const uint8_t* ar = a + i * lda;
      __m512i s = _mm512_setzero_si512();
      for (size_t p = 0; p < k64; p += 64) s = _mm512_dpbusd_epi32(s, _mm512_loadu_si512(ar + p), _mm512_loadu_si512(wr + p));
      if (k > k64) s = _mm512_dpbusd_epi32(s, _mm512_maskz_loadu_epi8(tail, ar + k64), _mm512_maskz_loadu_epi8(tail, wr + k64));
      c[i * ldc + j] = _mm512_reduce_add_epi32(s);
    }
  }
}
#endif

#if defined(__ARM_NEON) && defined(__aarch64__)
// a <= 127, so its bytes read as int8 are the same numbers: the signed
// products below are exact. Plain NEON: 8 products widen to int16 (each at
// most 127 * 127, two of them summed at most 32258) and pair-add into int32.
inline int32x4_t NeonMac(int32x4_t acc, uint8x16_t a, int8x16_t w) {
  const int8x16_t as = vreinterpretq_s8_u8(a);
  int16x8_t prod = vmull_s8(vget_low_s8(as), vget_low_s8(w));
  prod = vmlal_high_s8(prod, as, w);
  return vpadalq_s16(acc, prod);
}
#if defined(__ARM_FEATURE_DOTPROD)
inline int32x4_t NeonDotMac(int32x4_t acc, uint8x16_t a, int8x16_t w) {
  return vdotq_s32(acc, vreinterpretq_s8_u8(a), w);
}
#endif

template <int32x4_t (*Mac)(int32x4_t, uint8x16_t, int8x16_t)>
void GemmNeonT(const uint8_t* a, size_t lda, const int8_t* w, size_t ldw, size_t m, size_t n, size_t k, int32_t* c,
               size_t ldc) {
  const size_t k16 = k & ~size_t{15};
  for (size_t i = 0; i < m; ++i) {
    const uint8_t* ar = a + i * lda;
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const int8_t* w0 = w + j * ldw;
      int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
      for (size_t p = 0; p < k16; p += 16) {
        const uint8x16_t av = vld1q_u8(ar + p);
        s0 = Mac(s0, av, vld1q_s8(w0 + p));
        s1 = Mac(s1, av, vld1q_s8(w0 + ldw + p));
        s2 = Mac(s2, av, vld1q_s8(w0 + 2 * ldw + p));
        s3 = Mac(s3, av, vld1q_s8(w0 + 3 * ldw + p));
      }
      c[i * ldc + j] = vaddvq_s32(s0) + DotTail(ar, w0, k16, k);
      c[i * ldc + j + 1] = vaddvq_s32(s1) + DotTail(ar, w0 + ldw, k16, k);
      c[i * ldc + j + 2] = vaddvq_s32(s2) + DotTail(ar, w0 + 2 * ldw, k16, k);
      c[i * ldc + j + 3] = vaddvq_s32(s3) + DotTail(ar, w0 + 3 * ldw, k16, k);
    }
    for (; j < n; ++j) {
      const int8_t* wr = w + j * ldw;
      int32x4_t s = vdupq_n_s32(0);
      for (size_t p = 0; p < k16; p += 16) s = Mac(s, vld1q_u8(ar + p), vld1q_s8(wr + p));
      c[i * ldc + j] = vaddvq_s32(s) + DotTail(ar, wr, k16, k);
    }
  }
}
#endif

constexpr Int8Kernel kKernels[] = {
    {"reference", &GemmReference},
#if defined(__AVX2__)
    {"avx2", &GemmAvx2},
#endif
#if defined(__AVX2__) && defined(__AVXVNNI__)
    {"avx-vnni", &GemmAvxVnni},
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    {"avx512-vnni", &GemmAvx512Vnni},
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
    {"neon", &GemmNeonT<NeonMac>},
#if defined(__ARM_FEATURE_DOTPROD)
    {"neon-dotprod", &GemmNeonT<NeonDotMac>},
#endif
#endif
};

}  // namespace

std::span<const Int8Kernel> Int8Kernels() { return kKernels; }

const Int8Kernel& BestInt8Kernel() { return kKernels[std::size(kKernels) - 1]; }

}  // namespace frugal
