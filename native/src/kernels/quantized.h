// Block-quantized weights (dtypes Q8 and Q4) and the per-block int8 activations their integer kernels use.
//
// Layout of a quantized matrix, chosen for the integer dot products of x86 CPUs:
// - Stored output-major, one row per output feature as nn.Linear holds it (the fused experts' [in, out]
//   tensors are transposed when they are quantized), each row cut into blocks of kQuantBlock inputs with one
//   f16 scale per block: w = scale * q, symmetric, q8 in [-127, 127], q4 in [-8, 7]. Blocks of 32 with an f16
//   scale cost 8.5 / 4.5 bits per weight and keep q4's rounding error small enough for the quality targets
//   (larger groups save 0.4 bit on q4 but lose more than that in perplexity on the models we measured).
// - Quants are stored offset to unsigned (q8: q + 128 in a byte; q4: q + 8 in a nibble), because the CPUs'
//   byte dot products (vpdpbusd, vpmaddubsw) multiply unsigned by signed bytes; the offset times the
//   activations' block sum is taken back out (QuantizedActivations::init).
// - q4 packs 128 inputs in 64 bytes: byte j holds input j in its low nibble and input j + 64 in its high
//   one, so one 64-byte load gives inputs 0..63 and 64..127, in order, after a mask and a shift.
// - Rows are padded to kQuantRowAlign inputs (zero quants, zero scale) so the SIMD loops have no tails; text
//   models' widths are multiples of it anyway.
#pragma once
#include <cstdint>
#include <vector>

#include "../dtype.h"

namespace l4 {

constexpr int64_t kQuantBlock = 32;
constexpr int64_t kQuantRowAlign = 512;
// Lanes each block's activation scale and offset correction are repeated over (one 256-bit vector).
constexpr int64_t kQuantLanes = 8;

inline bool is_block_quantized(DType t) { return t == DType::Q8 || t == DType::Q4; }
inline int64_t quant_padded(int64_t K) { return (K + kQuantRowAlign - 1) / kQuantRowAlign * kQuantRowAlign; }
inline int64_t quant_row_bytes(DType t, int64_t K) { return t == DType::Q8 ? quant_padded(K) : quant_padded(K) / 2; }
inline int64_t quant_row_scales(int64_t K) { return quant_padded(K) / kQuantBlock; }
inline int quant_offset(DType t) { return t == DType::Q8 ? 128 : 8; }
// The largest |q| of a format's symmetric range.
inline int quant_max(DType t) { return t == DType::Q8 ? 127 : 8; }

// Quantizes one row of K floats into `quants` (quant_row_bytes) and `scales` (quant_row_scales f16 values).
void quantize_row(DType t, const float* row, int64_t K, uint8_t* quants, uint16_t* scales);
// Quant q (signed, offset removed) of input k of a stored row.
int quant_at(DType t, const uint8_t* quants, int64_t k);
// Dequantizes one stored row to K floats.
void dequantize_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, float* out);

// Activations quantized per block of 32 inputs to int8 (scale = block amax / 127), one record per token:
// q [padded] int8, then per block kQuantLanes copies of its scale (f32) and of init = -(offset / 8) * sum(q)
// (int32): an 8-lane integer dot product of the block started from init yields sum((w + offset) q) - offset
// sum(q) = sum(w q). Made once per batch for each distinct input, shared by every product that reads it.
struct QuantizedActivations {
  int64_t tokens = 0, K = 0, padded = 0, ld = 0;  // ld: bytes per token record
  int offset = 0;
  std::vector<uint8_t> data;
  const int8_t* q(int64_t t) const { return reinterpret_cast<const int8_t*>(data.data() + t * ld); }
  const float* scales(int64_t t) const { return reinterpret_cast<const float*>(data.data() + t * ld + padded); }
  const int32_t* init(int64_t t) const {
    return reinterpret_cast<const int32_t*>(data.data() + t * ld + padded + padded / kQuantBlock * kQuantLanes * 4);
  }
};
// Fills `out` for `tokens` rows of K floats, ldx apart (threads split the tokens).
void quantize_activations(const float* x, int64_t ldx, int64_t tokens, int64_t K, int offset, QuantizedActivations& out);

}  // namespace l4
