// AVX2 + FMA + F16C versions of the kernel inner loops. This file alone is compiled with those
// instruction sets enabled; kernels.cpp calls it only after checking the CPU has them.
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"

namespace l4 {

namespace {

struct LoadF32 {
  using T = float;
  static __m256 load8(const T* p) { return _mm256_loadu_ps(p); }
  static float load1(const T* p) { return *p; }
};
struct LoadBF16 {
  using T = uint16_t;
  static __m256 load8(const T* p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float load1(const T* p) { return bf16_to_f32(*p); }
};
struct LoadF16 {
  using T = uint16_t;
  static __m256 load8(const T* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float load1(const T* p) { return f16_to_f32(*p); }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Dot products of one weight row with up to four token rows at once: the weight row is widened
// once and reused for all four.
template <class L, int N>
inline void dot_rows(const float* const* xs, const typename L::T* w, int64_t in, float* out) {
  __m256 acc[N];
  for (int k = 0; k < N; k++) acc[k] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    __m256 wv = L::load8(w + i);
    for (int k = 0; k < N; k++) acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[k] + i), wv, acc[k]);
  }
  for (int k = 0; k < N; k++) {
    float s = hsum(acc[k]);
    for (int64_t j = i; j < in; j++) s += xs[k][j] * L::load1(w + j);
    out[k] = s;
  }
}

template <class L>
void linear_rows(const float* x, int64_t tokens, const Matrix& m, int64_t o_begin, int64_t o_end, float* y,
                 int64_t y_stride) {
  const int64_t in = m.cols;
  const auto* w = static_cast<const typename L::T*>(m.data);
  for (int64_t o = o_begin; o < o_end; o++) {
    const typename L::T* wr = w + o * in;
    int64_t t = 0;
    for (; t + 4 <= tokens; t += 4) {
      const float* xs[4] = {x + t * in, x + (t + 1) * in, x + (t + 2) * in, x + (t + 3) * in};
      float r[4];
      dot_rows<L, 4>(xs, wr, in, r);
      for (int k = 0; k < 4; k++) y[(t + k) * y_stride + o] = r[k];
    }
    for (; t < tokens; t++) {
      const float* xs[1] = {x + t * in};
      dot_rows<L, 1>(xs, wr, in, y + t * y_stride + o);
    }
  }
}

// x @ W for W [in, out], columns [c_begin, c_end): 16 columns x up to 4 tokens in registers,
// streaming down the rows of W.
template <class L, int N>
inline void in_out_block(const float* x, int64_t t0, const typename L::T* w, int64_t in, int64_t out, int64_t c,
                         float* y) {
  __m256 acc[N][2];
  for (int k = 0; k < N; k++) acc[k][0] = acc[k][1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < in; i++) {
    __m256 w0 = L::load8(w + i * out + c), w1 = L::load8(w + i * out + c + 8);
    for (int k = 0; k < N; k++) {
      __m256 xb = _mm256_set1_ps(x[(t0 + k) * in + i]);
      acc[k][0] = _mm256_fmadd_ps(xb, w0, acc[k][0]);
      acc[k][1] = _mm256_fmadd_ps(xb, w1, acc[k][1]);
    }
  }
  for (int k = 0; k < N; k++) {
    _mm256_storeu_ps(y + (t0 + k) * out + c, acc[k][0]);
    _mm256_storeu_ps(y + (t0 + k) * out + c + 8, acc[k][1]);
  }
}

template <class L>
void in_out_cols(const float* x, int64_t tokens, const Matrix& m, int64_t c_begin, int64_t c_end, float* y) {
  const int64_t in = m.rows, out = m.cols;
  const auto* w = static_cast<const typename L::T*>(m.data);
  int64_t c = c_begin;
  for (; c + 16 <= c_end; c += 16) {
    int64_t t = 0;
    for (; t + 4 <= tokens; t += 4) in_out_block<L, 4>(x, t, w, in, out, c, y);
    for (; t < tokens; t++) in_out_block<L, 1>(x, t, w, in, out, c, y);
  }
  for (; c < c_end; c++) {  // ragged tail
    for (int64_t t = 0; t < tokens; t++) {
      float s = 0;
      for (int64_t i = 0; i < in; i++) s += x[t * in + i] * L::load1(w + i * out + c);
      y[t * out + c] = s;
    }
  }
}

template <template <class> class F, class... A>
void by_dtype(const Matrix& m, A... args) {
  switch (m.dtype) {
    case DType::F32: F<LoadF32>::run(m, args...); break;
    case DType::BF16: F<LoadBF16>::run(m, args...); break;
    default: F<LoadF16>::run(m, args...); break;  // callers have checked the dtype
  }
}

template <class L>
struct LinearRows {
  static void run(const Matrix& m, const float* x, int64_t tokens, int64_t o0, int64_t o1, float* y, int64_t ys) {
    linear_rows<L>(x, tokens, m, o0, o1, y, ys);
  }
};
template <class L>
struct InOutCols {
  static void run(const Matrix& m, const float* x, int64_t tokens, int64_t c0, int64_t c1, float* y) {
    in_out_cols<L>(x, tokens, m, c0, c1, y);
  }
};

void avx2_linear_rows(const float* x, int64_t tokens, const Matrix& w, int64_t o0, int64_t o1, float* y, int64_t ys) {
  by_dtype<LinearRows>(w, x, tokens, o0, o1, y, ys);
}
void avx2_in_out_cols(const float* x, int64_t tokens, const Matrix& w, int64_t c0, int64_t c1, float* y) {
  by_dtype<InOutCols>(w, x, tokens, c0, c1, y);
}

const KernelTable kAvx2 = {"avx2", avx2_linear_rows, avx2_in_out_cols};

}  // namespace

const KernelTable& avx2_kernels() { return kAvx2; }

}  // namespace l4
