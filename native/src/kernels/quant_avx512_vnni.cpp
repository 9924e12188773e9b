// Products with Q8 / Q4 weights on AVX512_VNNI. vpdpbusd multiplies 64 unsigned bytes by 64 signed ones and
// adds each lane's four products into that 32-bit lane: with a group's vector (lane r = four inputs of row r,
// quantized.h) and four activation bytes broadcast to every lane, one instruction advances 16 rows' dot
// products. A block's integer sums start from the activations' correction (taking the weights' storage offset
// back out) and are scaled into f32 once per block. This file alone is compiled with AVX512_VNNI.
#include <immintrin.h>

#include <cstring>

#include "quant_driver.h"

namespace l4 {

namespace {

inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

struct VnniQuant {
  static constexpr int kGroups = 2, kTokens = 4;

  template <bool Q4, int R, int TT>
  static void tile(const Product& p, int64_t g, int64_t step, int64_t t0, int64_t n_end) {
    const QuantizedActivations& x = *p.xq;
    const int64_t blocks = x.blocks, block_bytes = quant_block_bytes(p.w.dtype);
    const uint8_t* wq[R];
    const uint16_t* ws[R];
    for (int r = 0; r < R; r++) {
      wq[r] = static_cast<const uint8_t*>(p.w.data) + (g + r * step) * blocks * block_bytes;
      ws[r] = p.w.scales + (g + r * step) * blocks * kQuantRows;
    }
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 out[R][TT];
    for (int r = 0; r < R; r++)
      for (int t = 0; t < TT; t++) out[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
      __m512i acc[R][TT];
      for (int t = 0; t < TT; t++) {
        const __m512i c = _mm512_set1_epi32(x.correction(t0 + t)[b]);
        for (int r = 0; r < R; r++) acc[r][t] = c;
      }
      if constexpr (Q4) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {  // vector i: inputs 8i .. 8i+3 (low nibbles), 8i+4 .. 8i+7 (high)
          __m512i lo[R], hi[R];
          for (int r = 0; r < R; r++) {
            const __m512i packed = _mm512_loadu_si512(wq[r] + b * block_bytes + 64 * i);
            lo[r] = _mm512_and_si512(packed, low4);
            hi[r] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
          }
          for (int t = 0; t < TT; t++) {
            const int8_t* xq = x.q(t0 + t) + b * kQuantBlock + 8 * i;
            const __m512i xlo = broadcast4(xq), xhi = broadcast4(xq + 4);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][t], lo[r], xlo), hi[r], xhi);
          }
        }
      } else {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {  // vector i: inputs 4i .. 4i+3
          __m512i wv[R];
          for (int r = 0; r < R; r++) wv[r] = _mm512_loadu_si512(wq[r] + b * block_bytes + 64 * i);
          for (int t = 0; t < TT; t++) {
            const __m512i xb = broadcast4(x.q(t0 + t) + b * kQuantBlock + 4 * i);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv[r], xb);
          }
        }
      }
      for (int r = 0; r < R; r++) {
        const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws[r] + b * kQuantRows)));
        for (int t = 0; t < TT; t++)
          out[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(scale, _mm512_set1_ps(x.scales(t0 + t)[b])),
                                      out[r][t]);
      }
    }
    for (int r = 0; r < R; r++) {
      const int64_t n = (g + r * step) * kQuantRows;
      const __mmask16 valid = n + kQuantRows <= n_end ? __mmask16(0xffff) : __mmask16((1u << (n_end - n)) - 1);
      for (int t = 0; t < TT; t++) _mm512_mask_storeu_ps(p.y + (t0 + t) * p.ldy + n, valid, out[r][t]);
    }
  }
};

}  // namespace

QuantRowsKernel avx512_vnni_quant_kernel() { return quant_driver::quant_rows<VnniQuant>; }

}  // namespace l4
