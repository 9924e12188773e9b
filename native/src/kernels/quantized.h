// Block-quantized weights (dtypes Q8 and Q4) and the per-block int8 activations their integer kernels use.
//
// Values: each output row is cut into blocks of kQuantBlock inputs with one f16 scale per block,
// w = scale * q, symmetric: q8 in [-127, 127], q4 in [-8, 7]. Blocks of 32 with an f16 scale cost 8.5 / 4.5
// bits per weight, as llama.cpp's Q8_0 / Q4_0.
//
// Layout, chosen for the CPUs' byte dot products (vpdpbusd, vpmaddubsw), which sum four byte products into
// each 32-bit lane: rows are interleaved in groups of kQuantRows = 16, so that one 64-byte vector holds four
// consecutive inputs of each of the 16 rows (lane r = row r). Multiplying it by the same four activations
// broadcast to every lane advances 16 dot products at once; a block's integer sums then sit one per lane, and
// are scaled and added into f32 once per block for 16 rows, not once per vector.
// - Stored group by group (a group's blocks contiguous, so a group streams from memory in order), block by
//   block. q8: a block is 8 vectors; vector i, lane r holds inputs 4i .. 4i+3 of row r. q4: a block is 4
//   vectors; vector i, lane r holds inputs 8i .. 8i+3 of row r in the low nibbles and 8i+4 .. 8i+7 in the high
//   ones (a mask and a shift give two q8-like vectors).
// - Quants are stored offset to unsigned (q8: q + 128; q4: q + 8), the unsigned side of vpdpbusd; the
//   offset times the activations' block sum is taken back out once per block (QuantizedActivations::correction).
// - Scales: kQuantRows f16 values per (group, block), in their own array, group-major like the quants.
// - Rows are padded to a whole group and inputs to a whole block, with quant 0 and scale 0.
// Row views (Matrix::slice_rows) start at a group boundary; the fused experts' [in, out] tensors are
// transposed to [out, in] when they are quantized.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "../dtype.h"

namespace l4 {

constexpr int64_t kQuantBlock = 32;
constexpr int64_t kQuantRows = 16;

inline bool is_block_quantized(DType t) { return t == DType::Q8 || t == DType::Q4; }
inline int64_t quant_blocks(int64_t K) { return (K + kQuantBlock - 1) / kQuantBlock; }
inline int64_t quant_groups(int64_t N) { return (N + kQuantRows - 1) / kQuantRows; }
// Bytes of quants of one (group, block), and of one group.
inline int64_t quant_block_bytes(DType t) { return t == DType::Q8 ? kQuantRows * kQuantBlock : kQuantRows * kQuantBlock / 2; }
inline int64_t quant_group_bytes(DType t, int64_t K) { return quant_blocks(K) * quant_block_bytes(t); }
inline int quant_offset(DType t) { return t == DType::Q8 ? 128 : 8; }

// Quantizes the N x K float matrix given row by row by `row(n, out)` into the layout above: `quants`
// (quant_groups(N) * quant_group_bytes) and `scales` (quant_groups(N) * quant_blocks(K) * kQuantRows f16).
void quantize_rows(DType t, int64_t N, int64_t K, const std::function<void(int64_t, float*)>& row, uint8_t* quants,
                   uint16_t* scales);
// The same from quants already made (a checkpoint's): row(n, q, s) fills row n's K signed quants and its
// quant_blocks(K) f16 scales.
void pack_rows(DType t, int64_t N, int64_t K, const std::function<void(int64_t, int8_t*, uint16_t*)>& row, uint8_t* quants,
               uint16_t* scales);
// Row n of a quantized matrix: its K signed quants and quant_blocks(K) f16 block scales.
void unpack_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, int64_t n, int8_t* q, uint16_t* block_scales);
// Row n of a quantized matrix, dequantized to K floats.
void dequantize_row(DType t, const uint8_t* quants, const uint16_t* scales, int64_t K, int64_t n, float* out);

// Activations quantized per block of 32 inputs to int8 (scale = block amax / 127), one record per token:
// q [blocks * 32] int8 (zero past K), then per block its scale (f32) and its correction = -offset * sum(q)
// (int32): a block's integer sum of stored weights times q, started from the correction, is sum(w q). Made
// once per batch for each distinct input and weight format, shared by every product that reads it.
struct QuantizedActivations {
  int64_t tokens = 0, K = 0, blocks = 0, ld = 0;  // ld: bytes per token record
  int offset = 0;
  std::vector<uint8_t> data;
  const int8_t* q(int64_t t) const { return reinterpret_cast<const int8_t*>(data.data() + t * ld); }
  const float* scales(int64_t t) const { return reinterpret_cast<const float*>(data.data() + t * ld + blocks * kQuantBlock); }
  const int32_t* correction(int64_t t) const {
    return reinterpret_cast<const int32_t*>(data.data() + t * ld + blocks * kQuantBlock + blocks * 4);
  }
};
// Fills `out` for `tokens` rows of K floats, ldx apart (threads split the tokens).
void quantize_activations(const float* x, int64_t ldx, int64_t tokens, int64_t K, int offset, QuantizedActivations& out);

}  // namespace l4
