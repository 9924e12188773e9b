// How the integer kernels for Q8 / Q4 weights walk a product, shared by the instruction-set files
// (quant_avx2.cpp, quant_avx512_vnni.cpp). `Set` provides kGroups (1 or 2), kTokens and
// tile<Q4, R, TT>(p, g, step, t0, n_end): the row groups g, g + step, ... (R of them) against TT tokens from t0,
// writing y[t * p.ldy + n] for the rows n < n_end. A tile's result does not depend on its shape, so a token
// gets the same outputs whether it is decoded alone or prefilled with others. `Set` has internal linkage in
// each file, so these instantiations never mix instruction sets.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels.h"
#include "quantized.h"

namespace l4 {
namespace quant_driver {

constexpr int64_t kBlockBytes = 128 * 1024;  // many tokens: row groups kept in L2 while every token passes

template <class Set, bool Q4, int R, int TT = Set::kTokens>
void tile_tokens(const Product& p, int64_t g, int64_t step, int64_t t0, int64_t tt, int64_t n_end) {
  if constexpr (TT > 1) {
    if (tt < TT) return tile_tokens<Set, Q4, R, TT - 1>(p, g, step, t0, tt, n_end);
  }
  Set::template tile<Q4, R, TT>(p, g, step, t0, n_end);
}

// Outputs [n0, n1): n0 starts a group of 16 rows, n1 ends one or is the last row.
template <class Set, bool Q4>
void quant_rows(const Product& p, int64_t n0, int64_t n1) {
  const int64_t g0 = n0 / kQuantRows, g1 = quant_groups(n1);
  if (p.tokens <= Set::kTokens) {
    // One token group: every weight streams from memory once. With kGroups = 2, groups go in pairs from the two
    // halves of the range: two sequential streams (see kernel_set.h).
    int64_t g = g0;
    if (Set::kGroups == 2) {
      const int64_t half = (g1 - g0) / 2;
      for (; g < g0 + half; g++) tile_tokens<Set, Q4, Set::kGroups>(p, g, half, 0, p.tokens, n1);
      g += half;
    }
    for (; g < g1; g++) tile_tokens<Set, Q4, 1>(p, g, 0, 0, p.tokens, n1);
    return;
  }
  const int64_t block = std::max<int64_t>(Set::kGroups, kBlockBytes / quant_group_bytes(p.w.dtype, p.w.cols));
  for (int64_t b0 = g0; b0 < g1; b0 += block) {
    const int64_t b1 = std::min(g1, b0 + block);
    for (int64_t t0 = 0; t0 < p.tokens; t0 += Set::kTokens) {
      const int64_t tt = std::min<int64_t>(Set::kTokens, p.tokens - t0);
      int64_t g = b0;
      for (; g + Set::kGroups <= b1; g += Set::kGroups) tile_tokens<Set, Q4, Set::kGroups>(p, g, 1, t0, tt, n1);
      for (; g < b1; g++) tile_tokens<Set, Q4, 1>(p, g, 0, t0, tt, n1);
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
