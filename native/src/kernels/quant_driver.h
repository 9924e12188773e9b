// How the integer kernels for Q8 / Q4 weights walk a product, shared by the instruction-set files
// (quant_avx2.cpp, quant_avx512_vnni.cpp). `Set` provides tile<Q4, R, TT>(p, w, s, row_step, t0, y): R stored
// rows (row_step rows apart, from quants w and scales s) against TT tokens from t0, writing
// y[t * p.ldy + r * row_step]. A tile's result does not depend on its shape, so every token gets the same
// output whether it is decoded alone or prefilled with others. `Set` has internal linkage in each file, so
// these instantiations never mix instruction sets.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "quantized.h"

namespace l4 {
namespace quant_driver {

constexpr int kTokens = 4;                   // tokens per tile: each weight vector serves them all
constexpr int64_t kBlockBytes = 128 * 1024;  // many tokens: rows kept in L2 while every token passes

template <class Set, bool Q4, int R>
void tile_tokens(const Product& p, const uint8_t* w, const uint16_t* s, int64_t row_step, int64_t t0, int64_t tt, float* y) {
  switch (tt) {
    case 4: return Set::template tile<Q4, R, 4>(p, w, s, row_step, t0, y);
    case 3: return Set::template tile<Q4, R, 3>(p, w, s, row_step, t0, y);
    case 2: return Set::template tile<Q4, R, 2>(p, w, s, row_step, t0, y);
    default: return Set::template tile<Q4, R, 1>(p, w, s, row_step, t0, y);
  }
}

template <class Set, bool Q4>
void quant_rows(const Product& p, int64_t n0, int64_t n1) {
  const int64_t row_bytes = Q4 ? p.xq->padded / 2 : p.xq->padded, blocks = p.xq->padded / kQuantBlock;
  const auto* w = static_cast<const uint8_t*>(p.w.data);
  auto rows_at = [&](int64_t n) { return w + n * row_bytes; };
  auto scales_at = [&](int64_t n) { return p.w.scales + n * blocks; };
  if (p.tokens <= kTokens) {
    // One token group: every row streams from memory once, in pairs from the two halves of the range (two
    // sequential streams; see kernel_set.h).
    const int64_t half = (n1 - n0) / 2;
    for (int64_t n = n0; n < n0 + half; n++)
      tile_tokens<Set, Q4, 2>(p, rows_at(n), scales_at(n), half, 0, p.tokens, p.y + n);
    if ((n1 - n0) % 2) tile_tokens<Set, Q4, 1>(p, rows_at(n1 - 1), scales_at(n1 - 1), 0, 0, p.tokens, p.y + n1 - 1);
    return;
  }
  const int64_t block = std::max<int64_t>(2, kBlockBytes / row_bytes / 2 * 2);
  for (int64_t b0 = n0; b0 < n1; b0 += block) {
    const int64_t b1 = std::min(n1, b0 + block);
    for (int64_t t0 = 0; t0 < p.tokens; t0 += kTokens) {
      const int64_t tt = std::min<int64_t>(kTokens, p.tokens - t0);
      int64_t n = b0;
      for (; n + 2 <= b1; n += 2) tile_tokens<Set, Q4, 2>(p, rows_at(n), scales_at(n), 1, t0, tt, p.y + t0 * p.ldy + n);
      if (n < b1) tile_tokens<Set, Q4, 1>(p, rows_at(n), scales_at(n), 0, t0, tt, p.y + t0 * p.ldy + n);
    }
  }
}

template <class Set>
void quant_rows(const Product& p, int64_t n0, int64_t n1) {
  if (p.w.dtype == DType::Q4) return quant_rows<Set, true>(p, n0, n1);
  quant_rows<Set, false>(p, n0, n1);
}

}  // namespace quant_driver
}  // namespace l4
