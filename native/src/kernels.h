// Compute kernels: the handful of operations the forward passes are made of.
// Weights stay in their checkpoint dtype (F32 / BF16 / F16) and are widened to f32 in registers;
// activations are f32. Each kernel has a portable scalar version and, on x86-64 CPUs that have
// it, an AVX2+FMA version chosen at run time (kernels_avx2.cpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "dtype.h"

namespace l4 {

// A row-major 2-D view of weight data (often straight into the mmapped checkpoint).
struct Matrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  Matrix slice_rows(int64_t first, int64_t count) const;  // rows [first, first+count)
};

// The per-ISA inner loops the public kernels are built from.
struct KernelTable {
  const char* name;
  // y[t * y_stride + o] = dot(x[t * in .. +in], W[o]) for t < tokens, o in [o_begin, o_end); W is [out, in].
  void (*linear_rows)(const float* x, int64_t tokens, const Matrix& w, int64_t o_begin, int64_t o_end, float* y,
                      int64_t y_stride);
  // y[t * out + c] = sum_i x[t * in + i] * W[i, c] for t < tokens, c in [c_begin, c_end); W is [in, out].
  void (*in_out_cols)(const float* x, int64_t tokens, const Matrix& w, int64_t c_begin, int64_t c_end, float* y);
};

const KernelTable& scalar_kernels();
#if defined(__x86_64__)
const KernelTable& avx2_kernels();
#endif

// Name of the kernel set in use ("avx2" or "scalar").
const char* simd_name();
// The kernel set in use, for callers that split work across threads themselves (its loops are single-threaded).
const KernelTable& active_kernels();

// y[t, o] = bias[o] + sum_i x[t, i] * W[o, i]: nn.Linear with W [out, in]. bias may be null.
void linear(const float* x, int64_t tokens, const Matrix& w, const float* bias, float* y);
// y[t, o] = sum_i x[t, i] * W[i, o]: x @ W with W [in, out] (the fused MoE expert tensors).
void matmul_in_out(const float* x, int64_t tokens, const Matrix& w, float* y);
// Copies row `row` of W to f32 (embedding lookup).
void row_to_f32(const Matrix& w, int64_t row, float* out);
// Widens any supported matrix to f32 (small tensors: norms, biases).
void to_f32(const Matrix& w, float* out);

// y = x * rsqrt(mean(x^2) + eps) * weight per row of `dim`; weight null means none (L2 norm).
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);

// nn.LayerNorm per row of `dim`: (x - mean) / sqrt(var + eps) * weight + bias, var biased.
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t rows, int64_t dim, float eps);

inline float silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
// nn.GELU(): the exact erf form, not the tanh approximation.
inline float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * float(M_SQRT1_2))); }

}  // namespace l4
