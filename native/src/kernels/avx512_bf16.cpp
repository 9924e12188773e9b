// Products with bf16 weights at "medium" matmul precision, for CPUs with AVX512_BF16: vdpbf16ps multiplies
// pairs of bf16 values exactly and adds them into f32 accumulators, twice the multiply-adds per instruction
// of f32 FMA. The activations arrive rounded to bf16 (Product::x_bf16, made by kernels.cpp), so only the
// order of the f32 additions differs from the f32 kernels on the same rounded inputs. Used for many tokens
// (prefill); decode is memory-bound and keeps the f32 kernels. This file alone is compiled with AVX512_BF16
// (and AVX512BW, which every CPU with it has).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace l4 {

namespace {

constexpr int64_t kDotRows = 4, kDotTokens = 4;  // nn.Linear tiles: weight rows x tokens
constexpr int64_t kRows = 12;                    // GEMM micro-kernel: tokens x 32 columns
constexpr int64_t kPanel = 32;
constexpr int64_t kDepthPairs = 128;             // GEMM depth block, in pairs of rows of W
constexpr int64_t kBlockBytes = 256 * 1024;      // nn.Linear rows kept in L2 while the tokens pass

inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}

inline float bf16_value(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---- nn.Linear, W [N, K] bf16: R rows x TT tokens, 32 elements (16 pairs) a step ----
template <int R, int TT>
void dot_tile(const uint16_t* x, int64_t ldx, int64_t K, const uint16_t* w, int64_t ldw, float* y, int64_t ldy) {
  __m512 acc[R][TT];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i xv[TT];
    for (int t = 0; t < TT; t++) xv[t] = _mm512_loadu_si512(x + t * ldx + k);
    for (int r = 0; r < R; r++) {
      const __m512i wv = _mm512_loadu_si512(w + r * ldw + k);
      for (int t = 0; t < TT; t++) acc[r][t] = dot_pairs(acc[r][t], wv, xv[t]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) {
      float s = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t j = k; j < K; j++) s += bf16_value(x[t * ldx + j]) * bf16_value(w[r * ldw + j]);  // exact products
      y[t * ldy + r] = s;
    }
}

template <int TT>
void dot_rows(const uint16_t* x, int64_t ldx, int64_t K, const uint16_t* w, int64_t ldw, int64_t rows, float* y,
              int64_t ldy) {
  int64_t r = 0;
  for (; r + kDotRows <= rows; r += kDotRows) dot_tile<kDotRows, TT>(x, ldx, K, w + r * ldw, ldw, y + r, ldy);
  for (; r < rows; r++) dot_tile<1, TT>(x, ldx, K, w + r * ldw, ldw, y + r, ldy);
}

void linear_rows_bf16(const Product& p, int64_t n0, int64_t n1, float*) {
  const int64_t K = p.w.cols, ldw = p.w.ld(), ldx = p.ldx_bf16;
  const auto* w = static_cast<const uint16_t*>(p.w.data);
  const uint16_t* x = p.x_bf16;
  const int64_t fit = kBlockBytes / (2 * K) / kDotRows * kDotRows, block = fit > 0 ? fit : kDotRows;
  for (int64_t b0 = n0; b0 < n1; b0 += block) {  // rows stay in L2 while every token group passes
    const int64_t rows = block < n1 - b0 ? block : n1 - b0;
    int64_t t = 0;
    for (; t + kDotTokens <= p.tokens; t += kDotTokens)
      dot_rows<kDotTokens>(x + t * ldx, ldx, K, w + b0 * ldw, ldw, rows, p.y + t * p.ldy + b0, p.ldy);
    switch (p.tokens - t) {
      case 3: dot_rows<3>(x + t * ldx, ldx, K, w + b0 * ldw, ldw, rows, p.y + t * p.ldy + b0, p.ldy); break;
      case 2: dot_rows<2>(x + t * ldx, ldx, K, w + b0 * ldw, ldw, rows, p.y + t * p.ldy + b0, p.ldy); break;
      case 1: dot_rows<1>(x + t * ldx, ldx, K, w + b0 * ldw, ldw, rows, p.y + t * p.ldy + b0, p.ldy); break;
      default: break;
    }
  }
}

// ---- fused experts, W [K, N] bf16: rows of W interleaved in pairs, tokens' pairs broadcast ----
// Indices for vpermt2w: 16-bit element 2j takes column j of the first row, 2j + 1 column j of the second
// (whose elements are numbered from 32); the high half does columns 16..31.
inline __m512i interleave_low() {
  return _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3,
                          34, 2, 33, 1, 32, 0);
}
inline __m512i interleave_high() {
  return _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24, 55, 23, 54, 22, 53, 21, 52, 20,
                          51, 19, 50, 18, 49, 17, 48, 16);
}

// Packs rows k, k + 1 x columns [c, c + cols) of W as 32 32-bit pairs (row k low, k + 1 high), zero past
// `cols` and past row K.
void pack_pair(const uint16_t* w, int64_t ldw, int64_t K, int64_t k, int64_t c, int64_t cols, uint32_t* d) {
  const uint16_t* lo = w + k * ldw + c;
  const uint16_t* hi = k + 1 < K ? lo + ldw : nullptr;
  if (cols == kPanel && hi) {
    // One permute interleaves 16 columns of the two rows: (row k, row k + 1) pairs in column order.
    const __m512i a = _mm512_loadu_si512(lo), b = _mm512_loadu_si512(hi);
    _mm512_storeu_si512(d, _mm512_permutex2var_epi16(a, interleave_low(), b));
    _mm512_storeu_si512(d + 16, _mm512_permutex2var_epi16(a, interleave_high(), b));
  } else {
    for (int64_t j = 0; j < kPanel; j++) d[j] = j < cols ? uint32_t(lo[j]) | (hi ? uint32_t(hi[j]) << 16 : 0u) : 0u;
  }
}

// y[MR][32] = (y if resume, else 0) + tokens' pairs . packed pairs
template <int MR>
void micro(const uint32_t* x, int64_t ldx, const uint32_t* panel, int64_t pairs, float* y, int64_t ldy, int64_t cols,
           bool resume) {
  __m512 acc[MR][2];
  float tile[MR][kPanel];
  for (int i = 0; i < MR; i++) {
    if (resume && cols < kPanel)
      for (int64_t c = 0; c < kPanel; c++) tile[i][c] = c < cols ? y[i * ldy + c] : 0.0f;
    for (int j = 0; j < 2; j++)
      acc[i][j] = !resume ? _mm512_setzero_ps() : cols == kPanel ? _mm512_loadu_ps(y + i * ldy + 16 * j) : _mm512_loadu_ps(tile[i] + 16 * j);
  }
  for (int64_t q = 0; q < pairs; q++) {
    const __m512i b0 = _mm512_loadu_si512(panel + q * kPanel), b1 = _mm512_loadu_si512(panel + q * kPanel + 16);
    for (int i = 0; i < MR; i++) {
      const __m512i a = _mm512_set1_epi32(int(x[i * ldx + q]));
      acc[i][0] = dot_pairs(acc[i][0], a, b0);
      acc[i][1] = dot_pairs(acc[i][1], a, b1);
    }
  }
  for (int i = 0; i < MR; i++) {
    if (cols == kPanel) {
      for (int j = 0; j < 2; j++) _mm512_storeu_ps(y + i * ldy + 16 * j, acc[i][j]);
    } else {
      for (int j = 0; j < 2; j++) _mm512_storeu_ps(tile[i] + 16 * j, acc[i][j]);
      for (int64_t c = 0; c < cols; c++) y[i * ldy + c] = tile[i][c];
    }
  }
}

template <int MR>
void micro_rows(int64_t mr, const uint32_t* x, int64_t ldx, const uint32_t* panel, int64_t pairs, float* y,
                int64_t ldy, int64_t cols, bool resume) {
  if constexpr (MR > 1) {
    if (mr < MR) return micro_rows<MR - 1>(mr, x, ldx, panel, pairs, y, ldy, cols, resume);
  }
  micro<MR>(x, ldx, panel, pairs, y, ldy, cols, resume);
}

void in_out_cols_bf16(const Product& p, int64_t n0, int64_t n1, float* scratch) {
  const int64_t K = p.w.rows, ldw = p.w.ld();
  const auto* w = static_cast<const uint16_t*>(p.w.data);
  // The tokens' bf16 values in pairs (x_bf16 rows are even in length, zero-padded).
  const auto* xpairs = reinterpret_cast<const uint32_t*>(p.x_bf16);
  const int64_t ldx = p.ldx_bf16 / 2;
  auto* panel = reinterpret_cast<uint32_t*>(scratch);  // [pair][kPanel]
  for (int64_t k0 = 0; k0 < K; k0 += 2 * kDepthPairs) {
    const int64_t pairs = kDepthPairs < (K - k0 + 1) / 2 ? kDepthPairs : (K - k0 + 1) / 2;
    for (int64_t c = n0; c < n1; c += kPanel) {
      const int64_t cols = kPanel < n1 - c ? kPanel : n1 - c;
      for (int64_t q = 0; q < pairs; q++) {
        // A panel's rows are a row stride apart, beyond the hardware prefetchers' reach: fetch the next
        // panel's part of these rows now, so it is in cache when its turn comes.
        const uint16_t* row = w + (k0 + 2 * q) * ldw + c + kPanel;
        _mm_prefetch(reinterpret_cast<const char*>(row), _MM_HINT_T0);
        if (k0 + 2 * q + 1 < K) _mm_prefetch(reinterpret_cast<const char*>(row + ldw), _MM_HINT_T0);
        pack_pair(w, ldw, K, k0 + 2 * q, c, cols, panel + q * kPanel);
      }
      for (int64_t t0 = 0; t0 < p.tokens; t0 += kRows)
        micro_rows<kRows>(kRows < p.tokens - t0 ? kRows : p.tokens - t0, xpairs + t0 * ldx + k0 / 2, ldx, panel,
                          pairs, p.y + t0 * p.ldy + c, p.ldy, cols, k0 > 0 || p.accumulate);
    }
  }
}

}  // namespace

Bf16Kernels avx512_bf16_kernels() { return {linear_rows_bf16, in_out_cols_bf16}; }

}  // namespace l4
