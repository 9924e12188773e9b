// The matrix kernels, written once over a small SIMD vocabulary `S` and instantiated per instruction set
// (scalar.cpp, avx2.cpp, avx512.cpp each include this file with their own traits and compiler flags).
// Everything here is single-threaded; kernels.cpp splits the work across threads.
//
// Everything is a template over S, whose types have internal linkage in each of those files, so no function
// compiled for one instruction set can stand in for another's at link time; for the same reason no std::
// function template is used here.
//
// S provides: V (a vector of S::kLanes floats), zero(), load(), store(), broadcast(), fma(a, b, acc) = a*b+acc,
// fma1() (the same on one float, rounded as the vector one), hsum(), sum_each() (kLanes vectors to the vector of
// their sums, each by the same fixed tree), prefetch(), exp(), Widen<T>::load / load1 turning kLanes (or one)
// weights of element type T into floats, and its register blocking.
//
// Summation order is part of the contract: every output is accumulated in the same order whatever the
// number of tokens, so a prefill and a token-by-token decode give bit-identical results.
// - nn.Linear W [N, K]: one output = a dot product of a weight row and a token row, accumulated in kLanes
//   strided partial sums over K, then hsum, then the K % kLanes tail in order.
// - Fused experts W [K, N]: one output = a single fused multiply-add chain over k = 0 .. K-1.
// - Attention scores (keys W [n, D]): kLanes strided partial sums over D as nn.Linear's, then sum_each's tree,
//   then the D % kLanes tail in order.
#pragma once
#include <cstdint>

#include "kernels.h"

namespace l4 {
namespace kernel_set {

// Floats of scratch the callers hand in (the GEMM's zero-padded panel and output tile).
constexpr int64_t kScratchFloats = 64 * 1024;
// nn.Linear with several token groups: bytes of weight rows that stay in the core's L2 while every token passes.
constexpr int64_t kLinearBlockBytes = 256 * 1024;
// GEMM over [K, N] weights: depth per block (kDepthBlock x kPanel weights stay in L1 while the tokens pass).
constexpr int64_t kDepthBlock = 256;
// Decode over [K, N] weights: the columns one pass over W accumulates, so their partial sums stay in L1.
constexpr int64_t kColumnChunk = 2048;

template <class X>
constexpr X min_of(X a, X b) { return a < b ? a : b; }

template <class S, class T>
struct Kernels {
  using V = typename S::V;
  using W = typename S::template Widen<T>;
  static constexpr int64_t L = S::kLanes;

  // ---- nn.Linear, W [N, K]: tiles of R weight rows x TT tokens, dot products in registers ----
  // Weight rows ldw apart, widened in registers (their outputs yr apart in y); tokens ldx apart (their outputs
  // ldy apart). Each weight vector is used TT times.
  template <int R, int TT>
  static void dot_tile(const float* x, int64_t ldx, int64_t K, const T* w, int64_t ldw, float* y, int64_t ldy,
                       int64_t yr = 1) {
    V acc[R][TT];
    for (int r = 0; r < R; r++)
      for (int t = 0; t < TT; t++) acc[r][t] = S::zero();
    int64_t k = 0;
    for (; k + L <= K; k += L) {
      V xv[TT];
      for (int t = 0; t < TT; t++) xv[t] = S::load(x + t * ldx + k);
      for (int r = 0; r < R; r++) {
        const V wv = W::load(w + r * ldw + k);
        for (int t = 0; t < TT; t++) acc[r][t] = S::fma(wv, xv[t], acc[r][t]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int t = 0; t < TT; t++) {
        float s = S::hsum(acc[r][t]);
        for (int64_t j = k; j < K; j++) s = S::fma1(x[t * ldx + j], W::load1(w + r * ldw + j), s);
        y[t * ldy + r * yr] = s;
      }
  }

  // Rows [0, rows) of w against TT tokens, R rows at a time, then the leftover rows.
  template <int R, int TT>
  static void dot_rows(const float* x, int64_t ldx, int64_t K, const T* w, int64_t ldw, int64_t rows, float* y,
                       int64_t ldy) {
    int64_t r = 0;
    for (; r + R <= rows; r += R) dot_tile<R, TT>(x, ldx, K, w + r * ldw, ldw, y + r, ldy);
    for (; r < rows; r++) dot_tile<1, TT>(x, ldx, K, w + r * ldw, ldw, y + r, ldy);
  }

  // Every token against rows [0, rows) of w, kDotTokens tokens at a time (a template argument each).
  template <int R, int TT = S::kDotTokens>
  static void dot_tokens(const float* x, int64_t ldx, int64_t tokens, int64_t K, const T* w, int64_t ldw,
                         int64_t rows, float* y, int64_t ldy) {
    if constexpr (TT == S::kDotTokens) {
      int64_t t = 0;
      for (; t + TT <= tokens; t += TT) dot_rows<R, TT>(x + t * ldx, ldx, K, w, ldw, rows, y + t * ldy, ldy);
      if (t < tokens) dot_tokens<R, TT - 1>(x + t * ldx, ldx, tokens - t, K, w, ldw, rows, y + t * ldy, ldy);
    } else if constexpr (TT > 0) {
      if (tokens == TT) return dot_rows<R, TT>(x, ldx, K, w, ldw, rows, y, ldy);
      dot_tokens<R, TT - 1>(x, ldx, tokens, K, w, ldw, rows, y, ldy);
    }
  }

  template <int TT>
  static void stream_rows(const Product& p, const T* w, int64_t K, int64_t ldw, int64_t n0, int64_t n1) {
    const int64_t q = (n1 - n0) / 4;
    for (int64_t r = n0; r < n0 + q; r++)
      dot_tile<4, TT>(p.x, p.ldx, K, w + r * ldw, q * ldw, p.y + r, p.ldy, q);
    for (int64_t r = n0 + 4 * q; r < n1; r++) dot_tile<1, TT>(p.x, p.ldx, K, w + r * ldw, ldw, p.y + r, p.ldy);
  }

  static void linear_rows(const Product& p, int64_t n0, int64_t n1, float*) {
    const T* w = static_cast<const T*>(p.w.data);
    const int64_t K = p.w.cols, ldw = p.w.ld();
    if (p.tokens <= S::kDotTokens) {
      // One token group: the weights stream from memory once, widened in registers. Rows go in fours from
      // the four quarters of the range: four sequential streams (adjacent rows read together are read ~1.5x
      // slower on the machines measured) and four independent FMA chains per token. With two (pairs from the
      // halves), the chains' latency capped a bf16 product at 82 GB/s from L3 with AVX-512 and 60 GB/s with
      // AVX2, about the memory's own rate on fast hosts; with four, 110 GB/s for both.
      switch (p.tokens) {
        case 4: return stream_rows<4>(p, w, K, ldw, n0, n1);
        case 3: return stream_rows<3>(p, w, K, ldw, n0, n1);
        case 2: return stream_rows<2>(p, w, K, ldw, n0, n1);
        default: return stream_rows<1>(p, w, K, ldw, n0, n1);
      }
    }
    // Several token groups: blocks of rows that stay in L2 while every group passes, kDotRows rows at a time so
    // each token vector is reused. 16-bit weights are widened in registers at every use: on Zen 4 that reached
    // 85-94% of the FMA peak, against 61-87% for widening each block into f32 scratch first (whose rows then
    // come from L2 at twice the bytes); on the AVX2 set the two were within 3%, except at 32 tokens (an
    // expert's share of a prompt), where widening in registers was 15% faster.
    const int64_t fit = kLinearBlockBytes / (K * int64_t(sizeof(T))) / S::kDotRows * S::kDotRows;
    const int64_t block = fit > 0 ? fit : S::kDotRows;
    for (int64_t b0 = n0; b0 < n1; b0 += block)
      dot_tokens<S::kDotRows>(p.x, p.ldx, p.tokens, K, w + b0 * ldw, ldw, min_of(block, n1 - b0), p.y + b0, p.ldy);
  }

  // ---- attention scores, keys W [n, D]: y[t][j] = x[t] . key j, for keys [j0, j1) ----
  // Tiles of kScoreRows query rows x kScoreKeys keys, one accumulator each: kLanes of them, which sum_each folds
  // into one vector of their sums. A horizontal sum per (query, key), as nn.Linear's tiles do, cost as much as the
  // products at head_dim 128 (a decode step's scores ran at a third of the FMA rate). Each sum is the same fixed
  // tree over its own accumulator, so a score does not depend on the tile it was computed in.
  static constexpr int64_t kScoreRows = L < 4 ? L : 4, kScoreKeys = L / kScoreRows;
  static constexpr int64_t kScoreAhead = 8;  // keys fetched ahead (8 and 16 measured alike, 32 and more slower)
  static void score_keys(const Product& p, int64_t j0, int64_t j1) {
    const T* w = static_cast<const T*>(p.w.data);
    const int64_t D = p.w.cols, ldw = p.w.ld();
    for (int64_t t0 = 0; t0 < p.tokens; t0 += kScoreRows) {
      // Rows past the last and keys past j1 repeat the last one; their sums are dropped.
      const int64_t rows = min_of(kScoreRows, p.tokens - t0);
      const float* x[kScoreRows];
      for (int64_t r = 0; r < kScoreRows; r++) x[r] = p.x + (t0 + min_of(r, rows - 1)) * p.ldx;
      for (int64_t b = j0; b < j1; b += kScoreKeys) {
        const int64_t keys = min_of(kScoreKeys, j1 - b);
        const T* key[kScoreKeys];
        for (int64_t k = 0; k < kScoreKeys; k++) key[k] = w + (b + min_of(k, keys - 1)) * ldw;
        if (t0 == 0 && b + kScoreAhead < j1)  // the first rows' pass reads the keys from memory: ask ahead
          for (int64_t k = 0; k < kScoreKeys; k++)
            for (int64_t byte = 0; byte < D * int64_t(sizeof(T)); byte += 64)
              S::prefetch(reinterpret_cast<const char*>(w + (b + kScoreAhead + k) * ldw) + byte);
        V acc[L];  // key k, row r: acc[k * kScoreRows + r]
        for (int64_t i = 0; i < L; i++) acc[i] = S::zero();
        int64_t d = 0;
        for (; d + L <= D; d += L) {
          V xv[kScoreRows];
          for (int64_t r = 0; r < kScoreRows; r++) xv[r] = S::load(x[r] + d);
          for (int64_t k = 0; k < kScoreKeys; k++) {
            const V kv = W::load(key[k] + d);
            for (int64_t r = 0; r < kScoreRows; r++) acc[k * kScoreRows + r] = S::fma(kv, xv[r], acc[k * kScoreRows + r]);
          }
        }
        float sums[L];
        S::store(sums, S::sum_each(acc));
        for (int64_t k = 0; k < keys; k++)
          for (int64_t r = 0; r < rows; r++) {
            float s = sums[k * kScoreRows + r];
            for (int64_t i = d; i < D; i++) s = S::fma1(x[r][i], W::load1(key[k] + i), s);
            p.y[(t0 + r) * p.ldy + b + k] = s;
          }
      }
    }
  }

  // ---- fused experts, W [K, N], few tokens: stream W's rows, accumulate columns in L1 ----
  // KU weight rows per pass over columns [c0, c1), TT tokens: y[t][c] continues its fma chain over k.
  template <int KU, int TT>
  static void axpy_rows(const float* x, int64_t ldx, const T* w, int64_t ldw, int64_t k, int64_t c0, int64_t c1,
                        float* y, int64_t ldy) {
    V xb[KU][TT];
    for (int u = 0; u < KU; u++)
      for (int t = 0; t < TT; t++) xb[u][t] = S::broadcast(x[t * ldx + k + u]);
    int64_t c = c0;
    for (; c + L <= c1; c += L) {
      V wv[KU];
      for (int u = 0; u < KU; u++) wv[u] = W::load(w + (k + u) * ldw + c);
      for (int t = 0; t < TT; t++) {
        V acc = S::load(y + t * ldy + c);
        for (int u = 0; u < KU; u++) acc = S::fma(xb[u][t], wv[u], acc);
        S::store(y + t * ldy + c, acc);
      }
    }
    for (; c < c1; c++)
      for (int t = 0; t < TT; t++) {
        float acc = y[t * ldy + c];
        for (int u = 0; u < KU; u++) acc = S::fma1(x[t * ldx + k + u], W::load1(w + (k + u) * ldw + c), acc);
        y[t * ldy + c] = acc;
      }
  }

  template <int TT>
  static void axpy_cols(const Product& p, const float* x, float* y, int64_t c0, int64_t c1) {
    constexpr int KU = TT == 1 ? 8 : TT == 2 ? 4 : 2;  // rows of W per pass: fewer passes over y, more streams
    const T* w = static_cast<const T*>(p.w.data);
    const int64_t K = p.w.rows, ldw = p.w.ld();
    if (!p.accumulate)
      for (int t = 0; t < TT; t++)
        for (int64_t c = c0; c < c1; c++) y[t * p.ldy + c] = 0.0f;
    int64_t k = 0;
    for (; k + KU <= K; k += KU) axpy_rows<KU, TT>(x, p.ldx, w, ldw, k, c0, c1, y, p.ldy);
    for (; k < K; k++) axpy_rows<1, TT>(x, p.ldx, w, ldw, k, c0, c1, y, p.ldy);
  }

  // ---- fused experts, W [K, N], many tokens: GEMM, kRows tokens x kPanel columns in registers ----
  static constexpr int64_t kPanel = S::kPanelVectors * L;  // weight columns per micro-kernel

  // y[MR tokens][kPanel columns] = (y if `resume`, else 0) + x[MR][kc] . w[kc][kPanel] (rows of w ldw apart,
  // widened in registers: each weight vector serves MR tokens). Resuming from y keeps each output one fma
  // chain across depth blocks.
  // `next`, when not null, is the next panel's first row: its rows are fetched into cache meanwhile (a
  // panel's rows are a row stride apart, beyond the hardware prefetchers' reach).
  template <class WT, int MR>
  static void micro(const float* x, int64_t ldx, const WT* w, int64_t ldw, int64_t kc, float* y, int64_t ldy,
                    bool resume, const WT* next) {
    using WW = typename S::template Widen<WT>;
    constexpr int NV = S::kPanelVectors;
    V acc[MR][NV];
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NV; j++) acc[i][j] = resume ? S::load(y + i * ldy + j * L) : S::zero();
    for (int64_t k = 0; k < kc; k++) {
      if (next)
        for (int64_t byte = 0; byte < kPanel * int64_t(sizeof(WT)); byte += 64)
          S::prefetch(reinterpret_cast<const char*>(next + k * ldw) + byte);
      V b[NV];
      for (int j = 0; j < NV; j++) b[j] = WW::load(w + k * ldw + j * L);
      for (int i = 0; i < MR; i++) {
        const V a = S::broadcast(x[i * ldx + k]);
        for (int j = 0; j < NV; j++) acc[i][j] = S::fma(a, b[j], acc[i][j]);
      }
    }
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NV; j++) S::store(y + i * ldy + j * L, acc[i][j]);
  }

  template <class WT, int MR>
  static void micro_rows(int64_t mr, const float* x, int64_t ldx, const WT* w, int64_t ldw, int64_t kc, float* y,
                         int64_t ldy, bool resume, const WT* next = nullptr) {
    if constexpr (MR > 1) {
      if (mr < MR) return micro_rows<WT, MR - 1>(mr, x, ldx, w, ldw, kc, y, ldy, resume, next);
    }
    micro<WT, MR>(x, ldx, w, ldw, kc, y, ldy, resume, next);
  }

  // Depth in blocks of kDepthBlock (a block of kPanel weight columns stays in L1 while every token passes);
  // the last columns, fewer than kPanel, go through a zero-padded copy (and a copy of their outputs) in scratch.
  static void gemm(const Product& p, int64_t n0, int64_t n1, float* scratch) {
    const T* w = static_cast<const T*>(p.w.data);
    const int64_t K = p.w.rows, ldw = p.w.ld();
    const int64_t full_end = n0 + (n1 - n0) / kPanel * kPanel, ragged = n1 - full_end;
    float* panel = scratch;                         // [kDepthBlock][kPanel]
    float* tile = scratch + kDepthBlock * kPanel;   // [kRows][kPanel]
    for (int64_t k0 = 0; k0 < K; k0 += kDepthBlock) {
      const int64_t kc = min_of(kDepthBlock, K - k0);
      const bool resume = k0 > 0 || p.accumulate;
      for (int64_t c = n0; c < full_end; c += kPanel)
        for (int64_t t0 = 0; t0 < p.tokens; t0 += S::kRows)
          micro_rows<T, S::kRows>(min_of<int64_t>(S::kRows, p.tokens - t0), p.x + t0 * p.ldx + k0, p.ldx,
                                  w + k0 * ldw + c, ldw, kc, p.y + t0 * p.ldy + c, p.ldy, resume,
                                  t0 == 0 && c + kPanel < full_end ? w + k0 * ldw + c + kPanel : nullptr);
      if (ragged == 0) continue;
      for (int64_t k = 0; k < kc; k++)
        for (int64_t j = 0; j < kPanel; j++) panel[k * kPanel + j] = j < ragged ? W::load1(w + (k0 + k) * ldw + full_end + j) : 0.0f;
      for (int64_t t0 = 0; t0 < p.tokens; t0 += S::kRows) {
        const int64_t mr = min_of<int64_t>(S::kRows, p.tokens - t0);
        float* y = p.y + t0 * p.ldy + full_end;
        if (resume)
          for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < kPanel; j++) tile[i * kPanel + j] = j < ragged ? y[i * p.ldy + j] : 0.0f;
        micro_rows<float, S::kRows>(mr, p.x + t0 * p.ldx + k0, p.ldx, panel, kPanel, kc, tile, kPanel, resume);
        for (int64_t i = 0; i < mr; i++)
          for (int64_t j = 0; j < ragged; j++) y[i * p.ldy + j] = tile[i * kPanel + j];
      }
    }
  }

  static void in_out_cols(const Product& p, int64_t n0, int64_t n1, float* scratch) {
    // Few columns (attention's values) or many tokens: accumulators stay in registers down the rows. Few
    // tokens over many columns (decode's experts): rows of W stream in memory order. Same sums either way.
    if (p.tokens > 4 || (p.tokens > 1 && n1 - n0 <= 4 * kPanel)) return gemm(p, n0, n1, scratch);
    for (int64_t c0 = n0; c0 < n1; c0 += kColumnChunk) {
      const int64_t c1 = min_of(n1, c0 + kColumnChunk);
      switch (p.tokens) {
        case 4: axpy_cols<4>(p, p.x, p.y, c0, c1); break;
        case 3: axpy_cols<3>(p, p.x, p.y, c0, c1); break;
        case 2: axpy_cols<2>(p, p.x, p.y, c0, c1); break;
        default: axpy_cols<1>(p, p.x, p.y, c0, c1); break;
      }
    }
  }
};

// e^x in place; every element goes through S::exp (the tail padded into one vector), so an element's result
// does not depend on where it sits in the row.
template <class S>
void exp_inplace(float* x, int64_t n) {
  constexpr int64_t L = S::kLanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) S::store(x + i, S::exp(S::load(x + i)));
  if (i == n) return;
  float tail[L];
  for (int64_t j = 0; j < L; j++) tail[j] = i + j < n ? x[i + j] : 0.0f;
  S::store(tail, S::exp(S::load(tail)));
  for (int64_t j = i; j < n; j++) x[j] = tail[j - i];
}

// One key tile of attend_tiled's online softmax, row by row (see KernelTable::softmax_tile). Lanes take elements by
// index from the tile's start, and the tail goes through a zero-padded vector, so the same values at the same
// indices give the same bits however long the tile is.
template <class S>
void softmax_tile(float* scores, int64_t rows, int64_t n, const int64_t* lo, const int64_t* hi, float scale, float* max,
                  float* sum, float* rescale) {
  using V = typename S::V;
  constexpr int64_t L = S::kLanes;
  const float minus_inf = -__builtin_inff();
  for (int64_t r = 0; r < rows; r++) {
    float* row = scores + r * n;
    for (int64_t j = 0; j < lo[r]; j++) row[j] = minus_inf;
    for (int64_t j = hi[r]; j < n; j++) row[j] = minus_inf;
    int64_t j = lo[r];
    V best = S::broadcast(minus_inf);
    for (; j + L <= hi[r]; j += L) {
      const V v = S::mul(S::load(row + j), S::broadcast(scale));
      S::store(row + j, v);
      best = S::max(best, v);
    }
    float grown = max[r] > S::hmax(best) ? max[r] : S::hmax(best);
    for (; j < hi[r]; j++) {
      row[j] *= scale;
      grown = grown > row[j] ? grown : row[j];
    }
    if (grown == minus_inf) {  // nothing visible yet: the row stays empty
      for (int64_t k = 0; k < n; k++) row[k] = 0.0f;
      rescale[r] = 1.0f;
      continue;
    }
    rescale[r] = __builtin_expf(max[r] - grown);  // 0 on the row's first visible tile
    max[r] = grown;
    const V m = S::broadcast(grown);
    V total = S::zero();
    int64_t k = 0;
    for (; k + L <= n; k += L) {
      const V p = S::exp(S::sub(S::load(row + k), m));
      S::store(row + k, p);
      total = S::fma(p, S::broadcast(1.0f), total);
    }
    if (k < n) {
      float tail[L];
      for (int64_t i = 0; i < L; i++) tail[i] = k + i < n ? row[k + i] - grown : minus_inf;
      const V p = S::exp(S::load(tail));
      S::store(tail, p);
      total = S::fma(p, S::broadcast(1.0f), total);
      for (int64_t i = 0; k + i < n; i++) row[k + i] = tail[i];
    }
    sum[r] = sum[r] * rescale[r] + S::hsum(total);
  }
}

// The KernelTable of instruction set S.
template <class S>
KernelTable make_table(const char* name) {
  KernelTable t;
  t.name = name;
  t.column_unit = Kernels<S, float>::kPanel;
  t.scratch_floats = kScratchFloats;
  t.exp_inplace = exp_inplace<S>;
  t.softmax_tile = softmax_tile<S>;
  t.linear_rows = [](const Product& p, int64_t n0, int64_t n1, float* scratch) {
    switch (p.w.dtype) {
      case DType::F32: return Kernels<S, float>::linear_rows(p, n0, n1, scratch);
      case DType::BF16: return Kernels<S, BF16Bits>::linear_rows(p, n0, n1, scratch);
      case DType::F8_E4M3: return Kernels<S, F8Bits>::linear_rows(p, n0, n1, scratch);
      default: return Kernels<S, F16Bits>::linear_rows(p, n0, n1, scratch);  // checked by the caller
    }
  };
  t.attention_scores = [](const Product& p, int64_t j0, int64_t j1) {
    switch (p.w.dtype) {
      case DType::F32: return Kernels<S, float>::score_keys(p, j0, j1);
      case DType::BF16: return Kernels<S, BF16Bits>::score_keys(p, j0, j1);
      default: return Kernels<S, F16Bits>::score_keys(p, j0, j1);  // checked by the caller
    }
  };
  t.in_out_cols = [](const Product& p, int64_t n0, int64_t n1, float* scratch) {
    switch (p.w.dtype) {
      case DType::F32: return Kernels<S, float>::in_out_cols(p, n0, n1, scratch);
      case DType::BF16: return Kernels<S, BF16Bits>::in_out_cols(p, n0, n1, scratch);
      default: return Kernels<S, F16Bits>::in_out_cols(p, n0, n1, scratch);
    }
  };
  return t;
}

}  // namespace kernel_set
}  // namespace l4
