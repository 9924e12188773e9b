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
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
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

const KernelTable kAvx512 = kernel_set::make_table<Avx512>("avx512");

}  // namespace

const KernelTable& avx512_kernels() { return kAvx512; }

}  // namespace l4
