// Compute kernels: the handful of operations the forward passes are made of.
// Weights stay in their checkpoint dtype (F32 / BF16 / F16) and are widened to f32 in registers;
// activations are f32 and every product is accumulated in f32, so the SIMD variants agree with the
// scalar one to rounding. One file per instruction set (scalar.cpp, avx2.cpp, avx512.cpp), chosen at
// run time; kernels.cpp splits the work across the thread pool.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../dtype.h"
#include "../weight_bytes.h"

namespace l4 {

// A 2-D view of weight data (often straight into the mmapped checkpoint). Rows are row-major, `stride`
// elements apart. Block-quantized dtypes (Q8, Q4: see quantized.h) are always stored output-major, rows
// padded, with an f16 scale per block in `scales`.
struct Matrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t stride = 0;  // elements from one row to the next; 0 = cols (packed)
  // The product x . W reads W as [in, out] (the fused experts' layout: rows = in) rather than [out, in]
  // (nn.Linear). Never set on quantized matrices, which are [out, in] whatever layout they came from.
  bool in_out = false;
  const uint16_t* scales = nullptr;  // Q8 / Q4: f16 per block (quantized.h)
  // F8_E4M3 (FP8): w = value * row_scales[output row]. Its activations are quantized to FP8 per token first when
  // fp8_activations says so: amax / 448 per token (compressed-tensors' dynamic scheme, scale 1 for a zero row), or
  // FbgemmFp8's max(min(amax, activation_ub) / 448, 1 / (448 * 512)).
  // I8 (an int8 KV cache; attention reads it, widened, never the product kernels): w = value * row_scales[row].
  const float* row_scales = nullptr;
  enum class Fp8Activations : uint8_t { None, PerToken, PerTokenBounded } fp8_activations = Fp8Activations::None;
  float activation_ub = 0.0f;
  int64_t ld() const { return stride ? stride : cols; }
  int64_t inputs() const { return in_out ? rows : cols; }
  int64_t outputs() const { return in_out ? cols : rows; }
  size_t bytes() const;                                  // weight data (with scales) this view covers
  Matrix slice_rows(int64_t first, int64_t count) const;  // stored rows [first, first+count)
};

// One product y = x . W (or y += x . W): `tokens` rows of x, ldx floats apart, each as long as W's inner
// dimension; rows of y ldy floats apart.
struct Product {
  const float* x;
  int64_t ldx;
  int64_t tokens;
  Matrix w;
  float* y;
  int64_t ldy;
  bool accumulate = false;  // [in, out] weights only: y += x . W, continuing each output's sum in order
  // At "medium" matmul precision with bf16 weights: x is already rounded to bf16, and these are its bits
  // (rows ldx_bf16 apart, an even number, zero-padded), for the AVX512_BF16 kernels.
  const uint16_t* x_bf16 = nullptr;
  int64_t ldx_bf16 = 0;
  // Quantized weights: x quantized per block (the integer kernels read this, not x).
  const struct QuantizedActivations* xq = nullptr;
  // FP8 weights with FP8 activations: x holds each token's FP8 values, x_scales its scale.
  const float* x_scales = nullptr;
};

// Element types the kernels are instantiated for (bf16 and f16 are both 16-bit patterns).
struct BF16Bits { uint16_t bits; };
struct F16Bits { uint16_t bits; };
struct F8Bits { uint8_t bits; };  // float8 e4m3fn

// One instruction set's single-threaded loops; each computes output columns [n0, n1) of a Product, using
// `scratch` (scratch_floats floats). Results do not depend on the token count or the column range: see
// kernel_set.h.
struct KernelTable {
  const char* name;
  int64_t column_unit;     // thread splits of the output columns are multiples of it
  int64_t scratch_floats;
  // W [N, K] (nn.Linear): y[t, n] = x[t] . W[n]. Each weight row is read from memory once for all tokens.
  void (*linear_rows)(const Product& p, int64_t n0, int64_t n1, float* scratch);
  // Attention scores, keys W [n, D] (F32, BF16 or F16): y[t, j] = x[t] . W[j] for keys [j0, j1), each summed the
  // same way whatever the number of query rows and keys.
  void (*attention_scores)(const Product& p, int64_t j0, int64_t j1);
  // W [K, N] (the fused MoE experts): y[t, n] = sum_k x[t, k] W[k, n]; few tokens stream W's rows in memory
  // order, many go through a GEMM over packed panels.
  void (*in_out_cols)(const Product& p, int64_t n0, int64_t n1, float* scratch);
  // x = e^x for n floats (within a few ulp of expf; e^-inf = 0).
  void (*exp_inplace)(float* x, int64_t n);
  // One tile of an online softmax over `rows` rows of n scores (n apart): positions [lo[r], hi[r]) are visible
  // (scaled by `scale`), the others -inf; max[r] becomes the running max, the row e^(score - max) (0 where masked),
  // rescale[r] = e^(old max - new max) and sum[r] = sum[r] * rescale[r] + the row's sum. A row with nothing
  // visible so far becomes 0 with rescale 1.
  void (*softmax_tile)(float* scores, int64_t rows, int64_t n, const int64_t* lo, const int64_t* hi, float scale,
                       float* max, float* sum, float* rescale);
};

// Products with block-quantized weights (Q8 / Q4, [out, in]) on Product::xq: integer dot products per block,
// scaled and summed in f32 in block order. Outputs [n0, n1).
using QuantRowsKernel = void (*)(const Product& p, int64_t n0, int64_t n1);
void quant_rows_scalar(const Product& p, int64_t n0, int64_t n1);

// Kernels for bf16 weights at "medium" precision (Product::x_bf16 set), where the CPU has AVX512_BF16.
struct Bf16Kernels {
  void (*linear_rows)(const Product& p, int64_t n0, int64_t n1, float* scratch);
  void (*in_out_cols)(const Product& p, int64_t n0, int64_t n1, float* scratch);
};

const KernelTable& scalar_kernels();
#if defined(__x86_64__)
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
Bf16Kernels avx512_bf16_kernels();
QuantRowsKernel avx2_quant_kernel();         // vpmaddubsw
QuantRowsKernel avx512_vnni_quant_kernel();  // vpdpbusd
#endif

// The kernel sets this CPU can run, best first ("avx512", "avx2", "scalar"). LLAMA4_TS_KERNELS=<name>
// forces one of them (to test it, or the portable one, on a machine that has more).
std::vector<std::string> available_kernels();
// Name of the kernel set in use.
const char* simd_name();

// The precision of products with bf16 weights, as torch.set_float32_matmul_precision names it: "highest"
// (the default; also "high") computes them in f32 on the exact weights; "medium" rounds the activations to
// bf16 first, as llama.cpp and torch's bf16 matmuls do, and runs many-token products on the CPU's bf16 dot
// products (AVX512_BF16) where it has them, about twice the f32 rate. Process-wide.
void set_matmul_precision(const std::string& precision);
const char* matmul_precision();

// y[t, o] = bias[o] + sum_i x[t, i] * W[o, i]: nn.Linear with W [out, in]. bias may be null.
void linear(const float* x, int64_t tokens, const Matrix& w, const float* bias, float* y);
// One of several independent products run as one parallel job (matmul_batch).
struct MatmulJob {
  const float* x;  // [tokens, in]
  int64_t tokens;
  Matrix w;
  float* y;  // [tokens, out]
};
// Runs independent products (an attention's q/k/v, every expert of a layer with the shared expert) as one
// parallel job, so the threads meet once for all of them; each thread takes its share of every product.
void matmul_batch(const std::vector<MatmulJob>& jobs);
// One product on a named kernel set of available_kernels(): lets a test compare every set the CPU has, in one
// process.
void matmul_on(const std::string& kernel_set, const float* x, int64_t tokens, const Matrix& w, float* y);
// Attention scores of `rows` queries against keys [n, D] on a named kernel set: scores [rows, n].
void attention_scores_on(const std::string& kernel_set, const float* q, int64_t rows, const Matrix& keys, float* scores);
// A float matrix quantized to Q8 / Q4 (load-time quantization, tests), or to F8_E4M3 with a scale per output row
// as FbgemmFp8 does (max(amax / 448, 1 / (448 * 512)), round to nearest): `storage` receives the data and scales the
// returned view points to. An [in, out] matrix comes out transposed to [out, in].
Matrix quantize_matrix(const Matrix& w, DType target, WeightBytes& storage);
// A Q8 / Q4 matrix from integer quants (a checkpoint's): row(n, q, s) gives row n's K quants (q8: [-128, 127],
// q4: [-8, 7]) and its quant_blocks(K) f16 block scales.
Matrix pack_matrix(DType t, int64_t N, int64_t K, const std::function<void(int64_t, int8_t*, uint16_t*)>& row,
                   WeightBytes& storage);

// On the calling thread alone, for callers that split work across threads themselves: attention scores (keys
// [n, D] as W, queries as x; keys [j0, j1)) and the product with W [in, out] over output columns [n0, n1).
void attention_scores_serial(const Product& p, int64_t j0, int64_t j1);
void matmul_in_out_serial(const Product& p, int64_t n0, int64_t n1);

// Softmax attention of a block of query rows over keys/values held as segments of consecutive positions
// (a ring-buffer cache and this call's new tokens, say). Scores and the weighted sum run on the product
// kernels; each output is summed over positions in ascending order, so a query gives the same result alone
// (decode) or inside a block (prefill).
struct KeySegment {
  Matrix keys, values;  // [positions, head_dim], rows may be strided: F32, BF16, or I8 (widened a tile at a time)
  int64_t first;        // position of row 0; segments are in ascending order and adjacent
};
struct AttentionBlock {
  const float* q;  // `rows` query rows of head_dim floats, ldq apart
  int64_t ldq, rows;
  const int64_t* visible_from;  // per row: first visible key position
  const int64_t* visible_to;    // per row: last visible key position
  const uint8_t* valid;         // per key position: 0 = padding, never visible
  float scale;                  // applied to q . k
  float* out;                   // [rows, head_dim], ldo apart
  int64_t ldo;
  float* const* probs;          // optional: per row, where its probabilities go, indexed by key position
};
// Single-threaded; `scores` is the caller's working buffer (grown as needed).
void attend(const AttentionBlock& a, const std::vector<KeySegment>& segments, std::vector<float>& scores);
// The same softmax attention (without probs) in tiles of kKeyTile key positions and an online softmax
// (flash-attention style): a tile's scores at a time, tiles no row sees skipped. Equal to attend() within f32
// rounding; a query's result does not depend on the other rows of the block.
constexpr int64_t kKeyTile = 128;
struct AttentionScratch {
  std::vector<float> scores, max, sum, rescale, keys_t, key_row, widened_keys, widened_values;
  std::vector<int64_t> lo, hi;
  struct Piece {
    const KeySegment* segment;
    int64_t row, count, at;  // rows [row, row + count) of the segment, at column `at` of the tile
  };
  std::vector<Piece> pieces;
};
void attend_tiled(const AttentionBlock& a, const std::vector<KeySegment>& segments, AttentionScratch& scratch);

// Copies row `row` of W to f32 (embedding lookup).
void row_to_f32(const Matrix& w, int64_t row, float* out);
// Widens any supported matrix to f32 (small tensors: norms, biases).
void to_f32(const Matrix& w, float* out);

// y = x * rsqrt(mean(x^2) + eps) * weight per row of `dim`; weight null means none (L2 norm).
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);
// nn.LayerNorm per row of `dim`: (x - mean) / sqrt(var + eps) * weight + bias, var biased.
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t rows, int64_t dim, float eps);
// out[r, i] = silu(gate[r, i]) * up[r, i] for rows r < rows and i < width, rows of gate/up `stride` apart
// (the fused experts keep gate and up side by side in one row). out is [rows, width], and may be gate itself
// when stride == width (elementwise, in place).
void silu_mul(const float* gate, const float* up, int64_t stride, int64_t rows, int64_t width, float* out);
// x[i] += y[i]
void add_in_place(float* x, const float* y, int64_t n);
// x[i] = e^x[i] on the kernel set in use (e^-inf = 0).
void exp_in_place(float* x, int64_t n);
// KernelTable::softmax_tile on the kernel set in use.
void softmax_tile(float* scores, int64_t rows, int64_t n, const int64_t* lo, const int64_t* hi, float scale, float* max,
                  float* sum, float* rescale);

// nn.GELU(): the exact erf form, not the tanh approximation.
inline float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * float(M_SQRT1_2))); }

}  // namespace l4
