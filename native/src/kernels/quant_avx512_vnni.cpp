// Products with Q8 / Q4 weights on AVX512_VNNI: vpdpbusd multiplies 64 unsigned weight bytes by 64 signed
// activation bytes and adds each group of four products into one of 16 int32 lanes; starting from the
// activations' init lanes takes the weights' storage offset back out (quantized.h). The 16 lanes are two
// blocks of 32 inputs: their integer sums are scaled by (weight scale x activation scale) per block and added
// into f32 lanes, summed across lanes at the end of the row. This file alone is compiled with AVX512_VNNI.
#include <immintrin.h>

#include <algorithm>

#include "quant_driver.h"

namespace l4 {

namespace {

// R weight rows (row_step rows apart) x TT tokens from t0; outputs y[t * ldy + r * row_step].
struct VnniQuant {
  template <bool Q4, int R, int TT>
  static void tile(const Product& p, const uint8_t* w, const uint16_t* s, int64_t row_step, int64_t t0, float* y) {
  const QuantizedActivations& x = *p.xq;
  const int64_t row_bytes = Q4 ? x.padded / 2 : x.padded, blocks = x.padded / kQuantBlock;
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512 acc[R][TT];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
  for (int64_t c = 0; c < x.padded; c += 512) {
    __m512 ws[R];  // the 16 block scales of these 512 inputs
    for (int r = 0; r < R; r++)
      ws[r] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + r * row_step * blocks + c / kQuantBlock)));
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {  // inputs c + 64 j .. c + 64 j + 63: blocks 2j and 2j + 1
      __m512i wv[R];
      __m512 wsj[R];
      const __m512i pick = _mm512_set_epi32(2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1,
                                            2 * j + 1, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j);
      for (int r = 0; r < R; r++) {
        const uint8_t* row = w + r * row_step * row_bytes;
        if constexpr (Q4) {
          const __m512i packed = _mm512_loadu_si512(row + c / 2 + 32 * (j & ~1));
          wv[r] = j % 2 == 0 ? _mm512_and_si512(packed, low4) : _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
        } else {
          wv[r] = _mm512_loadu_si512(row + c + 64 * j);
        }
        wsj[r] = _mm512_permutexvar_ps(pick, ws[r]);
      }
      const int64_t k = c + 64 * j, lane = k / kQuantBlock * kQuantLanes;
      for (int t = 0; t < TT; t++) {
        const __m512i xq = _mm512_loadu_si512(x.q(t0 + t) + k);
        const __m512 xs = _mm512_loadu_ps(x.scales(t0 + t) + lane);
        const __m512i init = _mm512_loadu_si512(x.init(t0 + t) + lane);
        for (int r = 0; r < R; r++) {
          const __m512i dot = _mm512_dpbusd_epi32(init, wv[r], xq);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wsj[r], xs), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) y[t * p.ldy + r * row_step] = _mm512_reduce_add_ps(acc[r][t]);
}
};

}  // namespace

QuantRowsKernel avx512_vnni_quant_kernel() { return quant_driver::quant_rows<VnniQuant>; }

}  // namespace l4
