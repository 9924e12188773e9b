// The AVX2 + FMA + F16C kernel set. This file alone is compiled with those instruction sets enabled;
// kernels.cpp calls it only after checking that the CPU has them.
#include <immintrin.h>

#include "kernel_set.h"

namespace l4 {

namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int64_t kLanes = 8;
  // Of the 16 ymm registers: GEMM micro-kernel 6 tokens x 16 columns (12 accumulators + 2 weight vectors +
  // 1 broadcast); nn.Linear tiles 4 weight rows x 3 tokens (12 accumulators + 3 token vectors + 1 weight vector).
  static constexpr int kRows = 6, kPanelVectors = 2;
  static constexpr int kDotRows = 4, kDotTokens = 3;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(float v) { return _mm256_set1_ps(v); }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float fma1(float a, float b, float acc) { return __builtin_fmaf(a, b, acc); }  // one rounding, as the vector fma
  static void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T0); }
  // e^x: x = n ln2 + r, e^r by Cephes' expf polynomial, times 2^n through the exponent bits; 0 below -87.3
  // (e^-inf = 0), NaN stays NaN.
  static V exp(V x) {
    const V lo = _mm256_set1_ps(-87.3365447f);
    const V c = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.7228394f));
    const V n = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), c);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V p = _mm256_set1_ps(1.9875691500e-4f);
    for (float k : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
      p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const V e = _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)), _mm256_cmp_ps(x, lo, _CMP_GE_OQ));
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN stays NaN
  }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lane j = the sum of v[j]'s lanes, as (s0 + s2) + (s1 + s3) with s_m = v[m] + v[m+4]: each round adds the
  // halves of twice as many vectors at once (128-bit, 64-bit, 32-bit halves).
  static V sum_each(const V (&v)[8]) {
    V h[4], p[2];
    for (int i = 0; i < 4; i++)  // [v0.lo + v0.hi, v1.lo + v1.hi]
      h[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20), _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    for (int i = 0; i < 2; i++)  // 128-bit half k: two partial sums of vectors 4i + k and 4i + 2 + k
      p[i] = _mm256_add_ps(_mm256_shuffle_ps(h[2 * i], h[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm256_shuffle_ps(h[2 * i], h[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // Half k, element e: the sum of vector k + 2e; put vector j in lane j.
    const V sums = _mm256_add_ps(_mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static float hmax(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  template <class T>
  struct Widen;
};
template <>
struct Avx2::Widen<float> {
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static float load1(const float* p) { return *p; }
};
template <>
struct Avx2::Widen<BF16Bits> {  // bf16 is the top half of an f32: widen by shifting into place
  static __m256 load(const BF16Bits* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float load1(const BF16Bits* p) { return bf16_to_f32(p->bits); }
};
template <>
struct Avx2::Widen<F16Bits> {
  static __m256 load(const F16Bits* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float load1(const F16Bits* p) { return f16_to_f32(p->bits); }
};

template <>
struct Avx2::Widen<F8Bits> {  // e4m3 bits moved into an f16 pattern are the value times 2^-8
  static __m256 load(const F8Bits* p) {
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7),
                                   _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
  }
  static float load1(const F8Bits* p) { return e4m3_to_f32(p->bits); }
};

const KernelTable kAvx2 = kernel_set::make_table<Avx2>("avx2");

}  // namespace

const KernelTable& avx2_kernels() { return kAvx2; }

}  // namespace l4
