// Products with Q8 / Q4 weights on AVX2, the integer kernel of every x86-64 CPU without AVX512_VNNI.
// vpmaddubsw multiplies 32 unsigned bytes by 32 signed ones into 16 saturating int16 pair sums and vpmaddwd
// widens them to 8 int32 lanes, each the sum of four products: a group's 64-byte vector (lane r = four inputs
// of row r, quantized.h) is two ymm halves, rows 0-7 and 8-15, multiplied by four activation bytes broadcast.
// q4's stored nibbles (0..15) are the unsigned side and the activations' correction takes their offset back out;
// q8's stored bytes would saturate the pair sums, so they are turned back into signed quants and multiplied
// with the sign trick: |w| (up to 128, so q = -128 from a checkpoint works) times x carrying w's sign.
// Compiled with AVX2 + FMA + F16C.
#include <immintrin.h>

#include <cstring>

#include "quant_driver.h"

namespace l4 {

namespace {

inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

struct Avx2Quant {
  static constexpr int kGroups = 1, kTokens = 2;  // 16 ymm registers: 2 halves x 2 tokens x (int + f32)

  template <bool Q4, int R, int TT>
  static void tile(const Product& p, int64_t g, int64_t step, int64_t t0, int64_t n_end) {
    static_assert(R == 1, "one group at a time");
    const QuantizedActivations& x = *p.xq;
    const int64_t blocks = x.blocks, block_bytes = quant_block_bytes(p.w.dtype);
    const uint8_t* wq = static_cast<const uint8_t*>(p.w.data) + g * blocks * block_bytes;
    const uint16_t* ws = p.w.scales + g * blocks * kQuantRows;
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0f), flip = _mm256_set1_epi8(char(0x80));
    __m256 out[2][TT];
    for (int h = 0; h < 2; h++)
      for (int t = 0; t < TT; t++) out[h][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
      __m256i acc[2][TT];
      for (int t = 0; t < TT; t++) {
        const __m256i c = Q4 ? _mm256_set1_epi32(x.correction(t0 + t)[b]) : _mm256_setzero_si256();  // q8 runs signed
        acc[0][t] = acc[1][t] = c;
      }
      const uint8_t* block = wq + b * block_bytes;
      for (int i = 0; i < (Q4 ? 4 : 8); i++) {
        for (int h = 0; h < 2; h++) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 64 * i + 32 * h));
          if constexpr (Q4) {
            const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            for (int t = 0; t < TT; t++) {
              const int8_t* xq = x.q(t0 + t) + b * kQuantBlock + 8 * i;
              const __m256i sums = _mm256_add_epi16(_mm256_maddubs_epi16(lo, broadcast4(xq)), _mm256_maddubs_epi16(hi, broadcast4(xq + 4)));
              acc[h][t] = _mm256_add_epi32(acc[h][t], _mm256_madd_epi16(sums, ones));
            }
          } else {
            const __m256i w = _mm256_xor_si256(v, flip);  // signed quants
            const __m256i magnitude = _mm256_abs_epi8(w);   // as unsigned bytes: |-128| = 128
            for (int t = 0; t < TT; t++) {
              const __m256i xb = broadcast4(x.q(t0 + t) + b * kQuantBlock + 4 * i);
              const __m256i sums = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(xb, w));
              acc[h][t] = _mm256_add_epi32(acc[h][t], _mm256_madd_epi16(sums, ones));
            }
          }
        }
      }
      for (int h = 0; h < 2; h++) {
        const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws + b * kQuantRows + 8 * h)));
        for (int t = 0; t < TT; t++)
          out[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[h][t]), _mm256_mul_ps(scale, _mm256_set1_ps(x.scales(t0 + t)[b])),
                                      out[h][t]);
      }
    }
    const int64_t n = g * kQuantRows;
    for (int t = 0; t < TT; t++) {
      float* y = p.y + (t0 + t) * p.ldy + n;
      if (n + kQuantRows <= n_end) {
        _mm256_storeu_ps(y, out[0][t]);
        _mm256_storeu_ps(y + 8, out[1][t]);
      } else {
        float tile[kQuantRows];
        _mm256_storeu_ps(tile, out[0][t]);
        _mm256_storeu_ps(tile + 8, out[1][t]);
        for (int64_t r = 0; r < n_end - n; r++) y[r] = tile[r];
      }
    }
  }
};

}  // namespace

QuantRowsKernel avx2_quant_kernel() { return quant_driver::quant_rows<Avx2Quant>; }

}  // namespace l4
