#include "kernels.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <stdexcept>

#include "thread_pool.h"

namespace l4 {

Matrix Matrix::slice_rows(int64_t first, int64_t count) const {
  Matrix m = *this;
  m.data = static_cast<const uint8_t*>(data) + size_t(first) * size_t(cols) * dtype_size(dtype);
  m.rows = count;
  return m;
}

namespace {

// Work below this many multiply-adds per thread costs more to hand out than to do.
const int64_t kMinMacsPerThread = 32768;

int64_t grain_for(int64_t macs_per_item) { return std::max<int64_t>(1, kMinMacsPerThread / std::max<int64_t>(1, macs_per_item)); }

// Activations of this many bytes stay in a core's L2 cache while the weight rows stream past them.
const int64_t kActivationBlockBytes = 256 * 1024;

inline float load_scalar(const Matrix& w, int64_t index) {
  switch (w.dtype) {
    case DType::F32: return static_cast<const float*>(w.data)[index];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[index]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[index]);
    default: throw std::runtime_error(std::string("no kernel for weight dtype ") + dtype_name(w.dtype));
  }
}

void scalar_linear_rows(const float* x, int64_t tokens, const Matrix& w, int64_t o_begin, int64_t o_end, float* y,
                        int64_t y_stride) {
  const int64_t in = w.cols;
  for (int64_t o = o_begin; o < o_end; o++) {
    for (int64_t t = 0; t < tokens; t++) {
      const float* xr = x + t * in;
      float acc = 0;
      for (int64_t i = 0; i < in; i++) acc += xr[i] * load_scalar(w, o * in + i);
      y[t * y_stride + o] = acc;
    }
  }
}

void scalar_in_out_cols(const float* x, int64_t tokens, const Matrix& w, int64_t c_begin, int64_t c_end, float* y) {
  const int64_t in = w.rows, out = w.cols;
  for (int64_t t = 0; t < tokens; t++) {
    float* yr = y + t * out;
    for (int64_t c = c_begin; c < c_end; c++) yr[c] = 0;
    for (int64_t i = 0; i < in; i++) {
      float xv = x[t * in + i];
      for (int64_t c = c_begin; c < c_end; c++) yr[c] += xv * load_scalar(w, i * out + c);
    }
  }
}

const KernelTable kScalar = {"scalar", scalar_linear_rows, scalar_in_out_cols};

const KernelTable& select_kernels() {
  // LLAMA4_TS_KERNELS=scalar forces the portable kernels (to test them on a machine that has AVX2).
  const char* forced = std::getenv("LLAMA4_TS_KERNELS");
  if (forced && std::string(forced) == "scalar") return kScalar;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return avx2_kernels();
#endif
  return kScalar;
}

const KernelTable& active() {
  static const KernelTable& table = select_kernels();
  return table;
}

void check_compute_dtype(const Matrix& w) {
  if (w.dtype != DType::F32 && w.dtype != DType::BF16 && w.dtype != DType::F16)
    throw std::runtime_error(std::string("no kernel for weight dtype ") + dtype_name(w.dtype));
}

}  // namespace

const KernelTable& scalar_kernels() { return kScalar; }
const char* simd_name() { return active().name; }
const KernelTable& active_kernels() { return active(); }

void linear(const float* x, int64_t tokens, const Matrix& w, const float* bias, float* y) {
  check_compute_dtype(w);
  const KernelTable& k = active();
  const int64_t out = w.rows;
  // Split the output features across threads. Many tokens (a prefill, image tiles) go through the
  // weight rows in blocks that fit the cache, instead of re-reading every token from memory per row.
  const int64_t block = std::max<int64_t>(4, kActivationBlockBytes / int64_t(sizeof(float) * w.cols) / 4 * 4);
  pool()->parallel_for(out, [&](int64_t o0, int64_t o1) {
    for (int64_t t0 = 0; t0 < tokens; t0 += block)
      k.linear_rows(x + t0 * w.cols, std::min(block, tokens - t0), w, o0, o1, y + t0 * out, out);
    if (bias)
      for (int64_t t = 0; t < tokens; t++)
        for (int64_t o = o0; o < o1; o++) y[t * out + o] += bias[o];
  }, std::max<int64_t>(16, grain_for(tokens * w.cols)));
}

void matmul_in_out(const float* x, int64_t tokens, const Matrix& w, float* y) {
  check_compute_dtype(w);
  const KernelTable& k = active();
  const int64_t kBlock = 16;  // columns per unit of work: two 8-wide registers
  const int64_t blocks = (w.cols + kBlock - 1) / kBlock;
  pool()->parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    k.in_out_cols(x, tokens, w, b0 * kBlock, std::min(w.cols, b1 * kBlock), y);
  }, std::max<int64_t>(4, grain_for(tokens * w.rows * kBlock)));
}

void row_to_f32(const Matrix& w, int64_t row, float* out) {
  for (int64_t c = 0; c < w.cols; c++) out[c] = load_scalar(w, row * w.cols + c);
}

void to_f32(const Matrix& w, float* out) {
  for (int64_t i = 0; i < w.rows * w.cols; i++) out[i] = load_scalar(w, i);
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; i++) ss += double(xr[i]) * xr[i];
    float scale = 1.0f / std::sqrt(float(ss / double(dim)) + eps);
    for (int64_t i = 0; i < dim; i++) yr[i] = weight ? (xr[i] * scale) * weight[i] : xr[i] * scale;
  }
}

void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; i++) sum += xr[i];
    const float mean = float(sum / double(dim));
    double ss = 0;
    for (int64_t i = 0; i < dim; i++) ss += double(xr[i] - mean) * double(xr[i] - mean);
    const float scale = 1.0f / std::sqrt(float(ss / double(dim)) + eps);
    for (int64_t i = 0; i < dim; i++) yr[i] = (xr[i] - mean) * scale * weight[i] + bias[i];
  }
}

}  // namespace l4
