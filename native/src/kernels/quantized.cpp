// Quantizing weights and activations into the layouts of quantized.h, and the portable (scalar) kernel for
// products with quantized weights, which the SIMD ones are tested against.
#include "quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../thread_pool.h"
#include "kernels.h"

namespace l4 {

namespace {

// Where input k (within its block) of row r (within its group) sits in a (group, block)'s quants.
struct QuantSlot {
  int64_t byte;
  bool high;  // q4: the high nibble
};
QuantSlot quant_slot(DType t, int64_t r, int64_t k) {
  if (t == DType::Q8) return {k / 4 * 64 + r * 4 + k % 4, false};
  return {k / 8 * 64 + r * 4 + k % 4, k % 8 >= 4};
}

int stored_quant(DType t, const uint8_t* block, int64_t r, int64_t k) {
  const QuantSlot s = quant_slot(t, r, k);
  const int u = t == DType::Q4 ? (s.high ? block[s.byte] >> 4 : block[s.byte] & 0x0f) : block[s.byte];
  return u - quant_offset(t);
}

}  // namespace

void pack_rows(DType t, int64_t N, int64_t K, const std::function<void(int64_t, int8_t*, uint16_t*)>& row, uint8_t* quants,
               uint16_t* scales) {
  const int64_t blocks = quant_blocks(K), block_bytes = quant_block_bytes(t);
  parallel_items(quant_groups(N), kQuantRows * 4 * K, [&](int64_t g0, int64_t g1) {
    std::vector<int8_t> q(blocks * kQuantBlock);
    std::vector<uint16_t> row_scales(blocks);
    for (int64_t g = g0; g < g1; g++) {
      uint8_t* group = quants + g * blocks * block_bytes;
      std::memset(group, t == DType::Q8 ? 0x80 : 0x88, size_t(blocks * block_bytes));  // quant 0
      for (int64_t r = 0; r < kQuantRows; r++) {
        const int64_t n = g * kQuantRows + r;
        std::fill(q.begin(), q.end(), int8_t(0));
        std::fill(row_scales.begin(), row_scales.end(), uint16_t(0));
        if (n < N) row(n, q.data(), row_scales.data());
        for (int64_t b = 0; b < blocks; b++) {
          scales[(g * blocks + b) * kQuantRows + r] = row_scales[b];
          uint8_t* block = group + b * block_bytes;
          for (int64_t k = 0; k < kQuantBlock; k++) {
            const int u = q[b * kQuantBlock + k] + quant_offset(t);
            const QuantSlot s = quant_slot(t, r, k);
            if (t == DType::Q8) block[s.byte] = uint8_t(u);
            else block[s.byte] = s.high ? uint8_t((block[s.byte] & 0x0f) | u << 4) : uint8_t((block[s.byte] & 0xf0) | u);
          }
        }
      }
    }
  });
}

void quantize_rows(DType t, int64_t N, int64_t K, const std::function<void(int64_t, float*)>& row, uint8_t* quants,
                   uint16_t* scales) {
  const int64_t blocks = quant_blocks(K);
  pack_rows(t, N, K, [&](int64_t n, int8_t* q, uint16_t* row_scales) {
    std::vector<float> values(blocks * kQuantBlock, 0.0f);
    row(n, values.data());
    for (int64_t b = 0; b < blocks; b++) {
      const float* v = values.data() + b * kQuantBlock;
      // q8: the largest magnitude maps to 127. q4: the value of largest magnitude maps to -8 exactly (the scale
      // takes its sign), which uses all 16 levels; the others land in [-8, 7].
      float extreme = 0.0f;
      for (int64_t k = 0; k < kQuantBlock; k++)
        if (std::fabs(v[k]) > std::fabs(extreme)) extreme = v[k];
      row_scales[b] = f32_to_f16(t == DType::Q8 ? std::fabs(extreme) / 127.0f : extreme / -8.0f);
      const float scale = f16_to_f32(row_scales[b]);  // quantize against the scale as stored
      const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
      const int lo = t == DType::Q8 ? -127 : -8, hi = t == DType::Q8 ? 127 : 7;
      for (int64_t k = 0; k < kQuantBlock; k++) q[b * kQuantBlock + k] = int8_t(std::clamp(int(std::nearbyint(v[k] * inverse)), lo, hi));
    }
  }, quants, scales);
}

void unpack_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, int64_t n, int8_t* q, uint16_t* block_scales) {
  const int64_t blocks = quant_blocks(K), g = n / kQuantRows, r = n % kQuantRows;
  for (int64_t b = 0; b < blocks; b++) block_scales[b] = scales[(g * blocks + b) * kQuantRows + r];
  for (int64_t k = 0; k < K; k++)
    q[k] = int8_t(stored_quant(t, quants + (g * blocks + k / kQuantBlock) * quant_block_bytes(t), r, k % kQuantBlock));
}

void dequantize_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, int64_t n, float* out) {
  const int64_t blocks = quant_blocks(K), g = n / kQuantRows, r = n % kQuantRows;
  for (int64_t k = 0; k < K; k++) {
    const int64_t b = k / kQuantBlock;
    const uint8_t* block = quants + (g * blocks + b) * quant_block_bytes(t);
    out[k] = f16_to_f32(scales[(g * blocks + b) * kQuantRows + r]) * float(stored_quant(t, block, r, k % kQuantBlock));
  }
}

void quantize_activations(const float* x, int64_t ldx, int64_t tokens, int64_t K, int offset, QuantizedActivations& out) {
  const int64_t blocks = quant_blocks(K);
  out.tokens = tokens;
  out.K = K;
  out.blocks = blocks;
  out.offset = offset;
  out.ld = blocks * (kQuantBlock + 8);
  out.data.resize(size_t(tokens * out.ld));
  parallel_items(tokens, 4 * K, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * ldx;
      int8_t* q = const_cast<int8_t*>(out.q(t));
      float* scales = const_cast<float*>(out.scales(t));
      int32_t* correction = const_cast<int32_t*>(out.correction(t));
      for (int64_t b = 0; b < blocks; b++) {
        const int64_t b0 = b * kQuantBlock, end = std::min(K, b0 + kQuantBlock);
        float amax = 0.0f;
        for (int64_t k = b0; k < end; k++) amax = std::max(amax, std::fabs(xr[k]));
        const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t k = b0; k < b0 + kQuantBlock; k++) {
          const int v = k < end ? int(std::nearbyint(xr[k] * inverse)) : 0;
          q[k] = int8_t(v);
          sum += v;
        }
        scales[b] = amax / 127.0f;
        correction[b] = -offset * sum;
      }
    }
  });
}

// y[t, n] = sum over blocks of (weight scale x activation scale) x integer block sum, in block order.
void quant_rows_scalar(const Product& p, int64_t n0, int64_t n1) {
  const DType t = p.w.dtype;
  const QuantizedActivations& x = *p.xq;
  const int64_t blocks = x.blocks, block_bytes = quant_block_bytes(t);
  const auto* quants = static_cast<const uint8_t*>(p.w.data);
  for (int64_t n = n0; n < n1; n++) {
    const int64_t g = n / kQuantRows, r = n % kQuantRows;
    for (int64_t tok = 0; tok < p.tokens; tok++) {
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; b++) {
        const uint8_t* block = quants + (g * blocks + b) * block_bytes;
        const int8_t* xq = x.q(tok) + b * kQuantBlock;
        int32_t dot = 0;
        for (int64_t k = 0; k < kQuantBlock; k++) dot += stored_quant(t, block, r, k) * int32_t(xq[k]);
        acc += f16_to_f32(p.w.scales[(g * blocks + b) * kQuantRows + r]) * x.scales(tok)[b] * float(dot);
      }
      p.y[tok * p.ldy + n] = acc;
    }
  }
}

}  // namespace l4
