// The AVX-512F kernel set (16 floats a vector, 32 registers). This file alone is compiled with
// AVX-512F enabled; kernels.cpp calls it only after checking that the CPU has it.
#include <immintrin.h>

#include "kernel_set.h"

namespace l4 {

namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int64_t kLanes = 16;
  // Of the 32 zmm registers: GEMM micro-kernel 12 tokens x 32 columns (24 accumulators + 2 weight vectors +
  // broadcasts); nn.Linear tiles 4 weight rows x 4 tokens (measured faster than 4 x 6, which leaves no spare register).
  static constexpr int kRows = 12, kPanelVectors = 2;
  static constexpr int kDotRows = 4, kDotTokens = 4;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V broadcast(float v) { return _mm512_set1_ps(v); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static float fma1(float a, float b, float acc) { return __builtin_fmaf(a, b, acc); }  // one rounding, as the vector fma
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T0); }
  // e^x: x = n ln2 + r, e^r by Cephes' expf polynomial, times 2^n through the exponent bits; 0 below -87.3
  // (e^-inf = 0), NaN stays NaN.
  static V exp(V x) {
    const V lo = _mm512_set1_ps(-87.3365447f);
    const V c = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.7228394f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    V p = _mm512_set1_ps(1.9875691500e-4f);
    for (float k : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(k));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512i scale = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    const V e = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), p, _mm512_castsi512_ps(scale));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), e, x);  // NaN stays NaN
  }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  // Lane j = the sum of v[j]'s lanes, as ((s0 + s2) + (s1 + s3)) with s_m = (v[m] + v[m+8]) + (v[m+4] + v[m+12]):
  // each round adds the halves of twice as many vectors at once (256-bit, 128-bit, 64-bit, 32-bit halves).
  static V sum_each(const V (&v)[16]) {
    V h[8], q[4], p[2];
    for (int i = 0; i < 8; i++)  // [v0.lo256 + v0.hi256, v1.lo256 + v1.hi256]
      h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 4; i++)  // 128-bit quad k holds vector 4i + k's four partial sums
      q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int i = 0; i < 2; i++)  // quad k: two partial sums of vectors 8i + k and 8i + 4 + k
      p[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // Quad k, element e: the sum of vector k + 4e; put vector j in lane j.
    const V sums = _mm512_add_ps(_mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), sums);
  }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  template <class T>
  struct Widen;
};
template <>
struct Avx512::Widen<float> {
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static float load1(const float* p) { return *p; }
};
template <>
struct Avx512::Widen<BF16Bits> {  // bf16 is the top half of an f32: widen by shifting into place
  static __m512 load(const BF16Bits* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static float load1(const BF16Bits* p) { return bf16_to_f32(p->bits); }
};
template <>
struct Avx512::Widen<F16Bits> {
  static __m512 load(const F16Bits* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static float load1(const F16Bits* p) { return f16_to_f32(p->bits); }
};

template <>
struct Avx512::Widen<F8Bits> {  // e4m3 bits moved into an f16 pattern are the value times 2^-8
  static __m512 load(const F8Bits* p) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7),
                                      _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8));
    return _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
  }
  static float load1(const F8Bits* p) { return e4m3_to_f32(p->bits); }
};

const KernelTable kAvx512 = kernel_set::make_table<Avx512>("avx512");

}  // namespace

const KernelTable& avx512_kernels() { return kAvx512; }

}  // namespace l4
