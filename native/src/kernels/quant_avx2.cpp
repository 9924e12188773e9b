// Products with Q8 / Q4 weights on AVX2: vpmaddubsw multiplies 32 unsigned bytes by 32 signed ones into 16
// saturating int16 pair sums, vpmaddwd widens them to 8 int32 lanes: one block of 32 inputs per vector,
// scaled by (weight scale x activation scale) and added into f32 lanes. q4's stored nibbles (0..15) go in as
// the unsigned side and the activations' init lanes take the offset back out; q8's bytes would saturate the
// pair sums, so they are turned back into signed quants and multiplied with the sign trick (|x| times w
// with x's sign). Also the integer kernel of AVX-512 CPUs without VNNI. Compiled with AVX2 + FMA + F16C.
#include <immintrin.h>

#include <algorithm>

#include "quant_driver.h"

namespace l4 {

namespace {

// Weights of block b (inputs 32 b .. 32 b + 31) of a stored row.
template <bool Q4>
__m256i weights(const uint8_t* row, int64_t b) {
  if constexpr (Q4) {
    // 128 inputs in 64 bytes: bytes 0..31 hold inputs 0..31 (low nibbles) and 64..95 (high), bytes 32..63
    // hold 32..63 and 96..127.
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b / 4 * 64 + (b % 2) * 32));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    return (b % 4) < 2 ? _mm256_and_si256(packed, low4) : _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
  } else {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32)), _mm256_set1_epi8(char(0x80)));
  }
}

struct Avx2Quant {
  template <bool Q4, int R, int TT>
  static void tile(const Product& p, const uint8_t* w, const uint16_t* s, int64_t row_step, int64_t t0, float* y) {
  const QuantizedActivations& x = *p.xq;
  const int64_t row_bytes = Q4 ? x.padded / 2 : x.padded, blocks = x.padded / kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][TT];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; b++) {
    __m256i wv[R];
    float ws[R];
    for (int r = 0; r < R; r++) {
      wv[r] = weights<Q4>(w + r * row_step * row_bytes, b);
      ws[r] = _cvtsh_ss(s[r * row_step * blocks + b]);
    }
    for (int t = 0; t < TT; t++) {
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q(t0 + t) + b * kQuantBlock));
      const float xs = x.scales(t0 + t)[b * kQuantLanes];
      if constexpr (Q4) {
        const __m256i init = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.init(t0 + t) + b * kQuantLanes));
        for (int r = 0; r < R; r++) {
          const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv[r], xq), ones), init);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(ws[r] * xs), acc[r][t]);
        }
      } else {
        const __m256i magnitude = _mm256_abs_epi8(xq);
        for (int r = 0; r < R; r++) {
          const __m256i signed_w = _mm256_sign_epi8(wv[r], xq);
          const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed_w), ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(ws[r] * xs), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TT; t++) {
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r][t]), _mm256_extractf128_ps(acc[r][t], 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      y[t * p.ldy + r * row_step] = _mm_cvtss_f32(h);
    }
}
};

}  // namespace

QuantRowsKernel avx2_quant_kernel() { return quant_driver::quant_rows<Avx2Quant>; }

}  // namespace l4
