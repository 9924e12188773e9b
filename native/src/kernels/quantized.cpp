// Quantizing weight rows and activations into the layouts of quantized.h, and the portable (scalar) kernel
// for products with quantized weights, which the SIMD ones are tested against.
#include "quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../thread_pool.h"
#include "kernels.h"

namespace l4 {

namespace {

int64_t q4_byte(int64_t k) { return k / 128 * 64 + k % 64; }
bool q4_high(int64_t k) { return k % 128 >= 64; }

void store_quant(DType t, uint8_t* quants, int64_t k, int q) {
  const int u = q + quant_offset(t);
  if (t == DType::Q8) {
    quants[k] = uint8_t(u);
    return;
  }
  uint8_t& b = quants[q4_byte(k)];
  b = q4_high(k) ? uint8_t((b & 0x0f) | u << 4) : uint8_t((b & 0xf0) | u);
}

}  // namespace

int quant_at(DType t, const uint8_t* quants, int64_t k) {
  if (t == DType::Q8) return int(quants[k]) - 128;
  const uint8_t b = quants[q4_byte(k)];
  return int(q4_high(k) ? b >> 4 : b & 0x0f) - 8;
}

void quantize_row(DType t, const float* row, int64_t K, uint8_t* quants, uint16_t* scales) {
  const int64_t padded = quant_padded(K);
  // Padding and unused nibbles hold quant 0.
  std::memset(quants, t == DType::Q8 ? 0x80 : 0x88, size_t(quant_row_bytes(t, K)));
  for (int64_t b0 = 0; b0 < padded; b0 += kQuantBlock) {
    const int64_t end = std::min(K, b0 + kQuantBlock);
    // q8: the largest magnitude maps to 127. q4: the value of largest magnitude maps to -8 exactly (its sign
    // chosen so), which uses all 16 levels; the others land in [-8, 7].
    float extreme = 0.0f;
    for (int64_t k = b0; k < end; k++)
      if (std::fabs(row[k]) > std::fabs(extreme)) extreme = row[k];
    const float ideal = t == DType::Q8 ? std::fabs(extreme) / 127.0f : extreme / -8.0f;
    scales[b0 / kQuantBlock] = f32_to_f16(ideal);
    const float scale = f16_to_f32(scales[b0 / kQuantBlock]);  // quantize against the scale as stored
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    const int lo = t == DType::Q8 ? -127 : -8, hi = t == DType::Q8 ? 127 : 7;
    for (int64_t k = b0; k < end; k++)
      store_quant(t, quants, k, std::clamp(int(std::nearbyint(row[k] * inverse)), lo, hi));
  }
}

void dequantize_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, float* out) {
  for (int64_t k = 0; k < K; k++) out[k] = f16_to_f32(scales[k / kQuantBlock]) * float(quant_at(t, quants, k));
}

void quantize_activations(const float* x, int64_t ldx, int64_t tokens, int64_t K, int offset, QuantizedActivations& out) {
  const int64_t padded = quant_padded(K), blocks = padded / kQuantBlock;
  out.tokens = tokens;
  out.K = K;
  out.padded = padded;
  out.offset = offset;
  out.ld = padded + blocks * kQuantLanes * 8;
  out.data.resize(size_t(tokens * out.ld));
  parallel_items(tokens, 4 * K, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * ldx;
      int8_t* q = const_cast<int8_t*>(out.q(t));
      float* scale_lanes = const_cast<float*>(out.scales(t));
      int32_t* init_lanes = const_cast<int32_t*>(out.init(t));
      for (int64_t b = 0; b < blocks; b++) {
        const int64_t b0 = b * kQuantBlock, end = std::min(K, b0 + kQuantBlock);
        float amax = 0.0f;
        for (int64_t k = b0; k < end; k++) amax = std::max(amax, std::fabs(xr[k]));
        const float scale = amax / 127.0f, inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t k = b0; k < b0 + kQuantBlock; k++) {
          const int v = k < end ? int(std::nearbyint(xr[k] * inverse)) : 0;
          q[k] = int8_t(v);
          sum += v;
        }
        for (int64_t l = 0; l < kQuantLanes; l++) {
          scale_lanes[b * kQuantLanes + l] = scale;
          init_lanes[b * kQuantLanes + l] = -(offset / 8) * sum;
        }
      }
    }
  });
}

// y[t, n] = sum over blocks of (weight scale x activation scale) x integer block dot, accumulated in block order.
void quant_rows_scalar(const Product& p, int64_t n0, int64_t n1) {
  const DType t = p.w.dtype;
  const QuantizedActivations& x = *p.xq;
  const int64_t row_bytes = quant_row_bytes(t, p.w.cols), blocks = quant_row_scales(p.w.cols);
  const auto* quants = static_cast<const uint8_t*>(p.w.data);
  for (int64_t n = n0; n < n1; n++) {
    const uint8_t* wq = quants + n * row_bytes;
    const uint16_t* ws = p.w.scales + n * blocks;
    for (int64_t tok = 0; tok < p.tokens; tok++) {
      const int8_t* xq = x.q(tok);
      const float* xs = x.scales(tok);
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; b++) {
        int32_t dot = 0;
        for (int64_t k = b * kQuantBlock; k < (b + 1) * kQuantBlock; k++) dot += quant_at(t, wq, k) * int32_t(xq[k]);
        acc += f16_to_f32(ws[b]) * xs[b * kQuantLanes] * float(dot);
      }
      p.y[tok * p.ldy + n] = acc;
    }
  }
}

}  // namespace l4
