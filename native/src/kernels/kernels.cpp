// Kernel selection and the parallel drivers: which instruction set runs, and how each product is split
// across the thread pool. The loops themselves live in the per-instruction-set files.
#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>

#include "../thread_pool.h"
#include "quantized.h"

namespace l4 {

Matrix Matrix::slice_rows(int64_t first, int64_t count) const {
  Matrix m = *this;
  if (is_block_quantized(dtype)) {
    if (first % kQuantRows) throw std::logic_error("a view of quantized rows must start at a group of 16");
    m.data = static_cast<const uint8_t*>(data) + size_t(first / kQuantRows) * size_t(quant_group_bytes(dtype, cols));
    m.scales = scales + first / kQuantRows * quant_blocks(cols) * kQuantRows;
  } else {
    m.data = static_cast<const uint8_t*>(data) + size_t(first) * size_t(ld()) * dtype_size(dtype);
    if (row_scales) m.row_scales = row_scales + first;  // per stored row (FP8 and I8 are never [in, out])
  }
  m.rows = count;
  return m;
}

size_t Matrix::bytes() const {
  if (is_block_quantized(dtype))
    return size_t(quant_groups(rows)) * size_t(quant_group_bytes(dtype, cols) + 2 * quant_blocks(cols) * kQuantRows);
  return size_t(rows) * size_t(cols) * dtype_size(dtype) + (row_scales ? size_t(rows) * sizeof(float) : 0);
}

namespace {

// Work below this many multiply-adds per thread costs more to hand out than to do.
const int64_t kMinMacsPerThread = 32768;

std::vector<const KernelTable*> supported() {
  std::vector<const KernelTable*> sets;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) sets.push_back(&avx512_kernels());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    sets.push_back(&avx2_kernels());
#endif
  sets.push_back(&scalar_kernels());
  return sets;
}

const KernelTable& select_kernels() {
  const std::vector<const KernelTable*> sets = supported();
  const char* forced = std::getenv("LLAMA4_TS_KERNELS");
  if (!forced || !*forced) return *sets.front();
  std::string names;
  for (const KernelTable* k : sets) {
    if (forced == std::string(k->name)) return *k;
    names += (names.empty() ? "" : ", ") + std::string(k->name);
  }
  throw std::runtime_error("LLAMA4_TS_KERNELS=" + std::string(forced) + " is not a kernel set this CPU can run (" +
                           names + ")");
}

const KernelTable& active() {
  static const KernelTable& table = select_kernels();
  return table;
}

void check_compute_dtype(const Matrix& w) {
  if (w.dtype != DType::F32 && w.dtype != DType::BF16 && w.dtype != DType::F16 && !is_block_quantized(w.dtype) &&
      !(w.dtype == DType::F8_E4M3 && !w.in_out && w.row_scales))
    throw std::runtime_error(std::string("no kernel for weight dtype ") + dtype_name(w.dtype));
}

void check_key_dtype(const Matrix& keys) {
  if (keys.dtype != DType::F32 && keys.dtype != DType::BF16 && keys.dtype != DType::F16)
    throw std::runtime_error(std::string("no attention kernel for keys of dtype ") + dtype_name(keys.dtype));
}

float* scratch_for(const KernelTable& k) {
  thread_local std::vector<float> scratch;
  if (int64_t(scratch.size()) < k.scratch_floats) scratch.resize(k.scratch_floats);
  return scratch.data();
}

std::atomic<bool> g_medium_precision{false};

// The AVX512_BF16 kernels, when the set in use is AVX-512 and the CPU has them.
const Bf16Kernels* bf16_kernels(const KernelTable& k) {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  static const Bf16Kernels kernels = has ? avx512_bf16_kernels() : Bf16Kernels{nullptr, nullptr};
  if (has && &k == &avx512_kernels()) return &kernels;
#endif
  return nullptr;
}

// Many-token products with rounded bf16 activations take the bf16 dot products; below that the f32 kernels
// (reading the weights once, which is all decode needs) on the same rounded activations.
const int64_t kBf16MinTokens = 5;

// The integer kernel for quantized weights that goes with kernel set k: vpdpbusd where the CPU has
// AVX512_VNNI, else vpmaddubsw on any AVX2 CPU, else the portable one.
QuantRowsKernel quant_kernel(const KernelTable& k) {
#if defined(__x86_64__)
  static const bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (vnni && &k == &avx512_kernels()) return avx512_vnni_quant_kernel();
  if (&k == &avx512_kernels() || &k == &avx2_kernels()) return avx2_quant_kernel();
#endif
  return quant_rows_scalar;
}

void product_columns(const KernelTable& k, const Product& p, bool in_out, int64_t n0, int64_t n1) {
  if (p.xq) return quant_kernel(k)(p, n0, n1);
  if (p.w.dtype == DType::F8_E4M3) {  // the kernels multiply the FP8 values; the scales come after
    k.linear_rows(p, n0, n1, scratch_for(k));
    for (int64_t t = 0; t < p.tokens; t++) {
      const float token_scale = p.x_scales ? p.x_scales[t] : 1.0f;
      for (int64_t n = n0; n < n1; n++) p.y[t * p.ldy + n] *= token_scale * p.w.row_scales[n];
    }
    return;
  }
  const Bf16Kernels* bf16 = p.x_bf16 && p.tokens >= kBf16MinTokens ? bf16_kernels(k) : nullptr;
  if (bf16)
    (in_out ? bf16->in_out_cols : bf16->linear_rows)(p, n0, n1, scratch_for(k));
  else
    (in_out ? k.in_out_cols : k.linear_rows)(p, n0, n1, scratch_for(k));
}

// A batch's activations rounded to bf16 for "medium" precision: values as floats, and their bits.
struct RoundedActivations {
  const float* source;
  std::vector<float> values;
  std::vector<uint16_t> bits;
  int64_t ld_bits;
};

const RoundedActivations& rounded(std::vector<RoundedActivations>& cache, const float* x, int64_t tokens, int64_t K) {
  for (const RoundedActivations& r : cache)
    if (r.source == x && int64_t(r.values.size()) == tokens * K) return r;
  RoundedActivations r{x, std::vector<float>(tokens * K), {}, (K + 1) / 2 * 2};
  r.bits.assign(tokens * r.ld_bits, 0);
  for (int64_t t = 0; t < tokens; t++)
    for (int64_t i = 0; i < K; i++) {
      const uint16_t b = f32_to_bf16(x[t * K + i]);
      r.bits[t * r.ld_bits + i] = b;
      r.values[t * K + i] = bf16_to_f32(b);
    }
  cache.push_back(std::move(r));
  return cache.back();
}

// Activations of FP8 products quantized to FP8 per token (Matrix::fp8_activations), once per distinct x and scheme:
// each token's FP8 values as floats, and its scale.
struct Fp8Activations {
  const float* source;
  Matrix::Fp8Activations scheme;
  float ub;
  std::vector<float> values, scales;
};

const Fp8Activations& fp8_activations(std::vector<Fp8Activations>& cache, const float* x, int64_t tokens, int64_t K,
                                      const Matrix& w) {
  for (const Fp8Activations& a : cache)
    if (a.source == x && a.scheme == w.fp8_activations && a.ub == w.activation_ub && int64_t(a.scales.size()) == tokens) return a;
  Fp8Activations a{x, w.fp8_activations, w.activation_ub, std::vector<float>(tokens * K), std::vector<float>(tokens)};
  parallel_items(tokens, 8 * K, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* row = x + t * K;
      float amax = 0.0f;
      for (int64_t k = 0; k < K; k++) amax = std::max(amax, std::fabs(row[k]));
      float scale;
      if (w.fp8_activations == Matrix::Fp8Activations::PerTokenBounded)
        scale = std::max(std::min(amax, w.activation_ub) / 448.0f, 1.0f / (448.0f * 512.0f));
      else
        scale = amax > 0.0f ? amax / 448.0f : 1.0f;
      a.scales[t] = scale;
      for (int64_t k = 0; k < K; k++) a.values[t * K + k] = e4m3_to_f32(f32_to_e4m3(row[k] / scale));
    }
  });
  cache.push_back(std::move(a));
  return cache.back();
}

// The activations of quantized products, quantized once per distinct (x, offset).
const QuantizedActivations& quantized(std::vector<QuantizedActivations>& cache, std::vector<const float*>& sources,
                                      const float* x, int64_t tokens, int64_t K, int offset) {
  for (size_t i = 0; i < cache.size(); i++)
    if (sources[i] == x && cache[i].tokens == tokens && cache[i].K == K && cache[i].offset == offset) return cache[i];
  cache.emplace_back();
  sources.push_back(x);
  quantize_activations(x, K, tokens, K, offset, cache.back());
  return cache.back();
}

void run_batch(const KernelTable& k, const std::vector<MatmulJob>& jobs) {
  double total = 0;  // multiply-adds
  for (const MatmulJob& m : jobs) {
    check_compute_dtype(m.w);
    total += double(m.tokens) * double(m.w.rows) * double(m.w.cols);
  }
  const int64_t parts = std::min<int64_t>(num_threads(), std::max<int64_t>(1, int64_t(total / kMinMacsPerThread)));
  std::vector<Product> products;
  std::vector<RoundedActivations> rounded_cache;
  rounded_cache.reserve(jobs.size());  // references into it stay valid
  std::vector<QuantizedActivations> quantized_cache;
  std::vector<const float*> quantized_sources;
  quantized_cache.reserve(jobs.size());
  std::vector<Fp8Activations> fp8_cache;
  fp8_cache.reserve(jobs.size());
  for (const MatmulJob& m : jobs) {
    const int64_t K = m.w.inputs(), N = m.w.outputs();
    Product p{m.x, K, m.tokens, m.w, m.y, N};
    if (is_block_quantized(m.w.dtype) && m.tokens > 0) {
      p.xq = &quantized(quantized_cache, quantized_sources, m.x, m.tokens, K, quant_offset(m.w.dtype));
    } else if (m.w.dtype == DType::F8_E4M3 && m.w.fp8_activations != Matrix::Fp8Activations::None && m.tokens > 0) {
      const Fp8Activations& a = fp8_activations(fp8_cache, m.x, m.tokens, K, m.w);
      p.x = a.values.data();
      p.x_scales = a.scales.data();
    } else if (g_medium_precision.load() && m.w.dtype == DType::BF16 && m.tokens > 0) {
      const RoundedActivations& r = rounded(rounded_cache, m.x, m.tokens, K);
      p.x = r.values.data();
      p.x_bf16 = r.bits.data();
      p.ldx_bf16 = r.ld_bits;
    }
    products.push_back(p);
  }
  // Every thread takes its share of every product's columns (contiguous, in column units), so all threads do
  // the same mix of work (streaming nn.Linear rows, experts' rows, GEMMs) and reach the end together.
  pool()->parallel_for(parts, [&](int64_t part0, int64_t part1) {
    for (int64_t part = part0; part < part1; part++)
      for (size_t j = 0; j < jobs.size(); j++) {
        const int64_t N = products[j].ldy;
        const int64_t unit = products[j].xq ? kQuantRows : k.column_unit;  // quantized rows come in groups
        const int64_t units = (N + unit - 1) / unit;
        const int64_t c0 = std::min(N, units * part / parts * unit);
        const int64_t c1 = std::min(N, units * (part + 1) / parts * unit);
        if (jobs[j].tokens > 0 && c0 < c1) product_columns(k, products[j], jobs[j].w.in_out, c0, c1);
      }
  });
}

}  // namespace

std::vector<std::string> available_kernels() {
  std::vector<std::string> names;
  for (const KernelTable* k : supported()) names.push_back(k->name);
  return names;
}
const char* simd_name() { return active().name; }

void set_matmul_precision(const std::string& precision) {
  if (precision != "highest" && precision != "high" && precision != "medium")
    throw std::runtime_error("matmul precision must be \"highest\", \"high\" or \"medium\", got \"" + precision + "\"");
  g_medium_precision.store(precision == "medium");
}

const char* matmul_precision() { return g_medium_precision.load() ? "medium" : "highest"; }

void attention_scores_serial(const Product& p, int64_t j0, int64_t j1) {
  check_key_dtype(p.w);
  active().attention_scores(p, j0, j1);
}

void attention_scores_on(const std::string& kernel_set, const float* q, int64_t rows, const Matrix& keys, float* scores) {
  check_key_dtype(keys);
  for (const KernelTable* k : supported())
    if (kernel_set == k->name) return k->attention_scores(Product{q, keys.cols, rows, keys, scores, keys.rows}, 0, keys.rows);
  throw std::runtime_error("no kernel set \"" + kernel_set + "\" on this CPU");
}

void matmul_in_out_serial(const Product& p, int64_t n0, int64_t n1) {
  check_compute_dtype(p.w);
  product_columns(active(), p, true, n0, n1);
}

void linear(const float* x, int64_t tokens, const Matrix& w, const float* bias, float* y) {
  run_batch(active(), {MatmulJob{x, tokens, w, y}});
  if (bias)
    for (int64_t t = 0; t < tokens; t++)
      for (int64_t o = 0; o < w.rows; o++) y[t * w.rows + o] += bias[o];
}

void matmul_batch(const std::vector<MatmulJob>& jobs) { run_batch(active(), jobs); }

void matmul_on(const std::string& kernel_set, const float* x, int64_t tokens, const Matrix& w, float* y) {
  for (const KernelTable* k : supported())
    if (kernel_set == k->name) return run_batch(*k, {MatmulJob{x, tokens, w, y}});
  throw std::runtime_error("no kernel set \"" + kernel_set + "\" on this CPU");
}

namespace {
// Elements [c0, c1) of stored row `row` of a float matrix, widened to f32.
void widen_range(const Matrix& w, int64_t row, int64_t c0, int64_t c1, float* out) {
  const size_t first = size_t(row) * size_t(w.ld());
  switch (w.dtype) {
    case DType::F32:
      for (int64_t c = c0; c < c1; c++) out[c - c0] = static_cast<const float*>(w.data)[first + c];
      break;
    case DType::BF16:
      for (int64_t c = c0; c < c1; c++) out[c - c0] = bf16_to_f32(static_cast<const uint16_t*>(w.data)[first + c]);
      break;
    case DType::F16:
      for (int64_t c = c0; c < c1; c++) out[c - c0] = f16_to_f32(static_cast<const uint16_t*>(w.data)[first + c]);
      break;
    case DType::I8:  // an int8 KV cache's rows: code * row scale
      for (int64_t c = c0; c < c1; c++) out[c - c0] = float(static_cast<const int8_t*>(w.data)[first + c]) * w.row_scales[row];
      break;
    case DType::F8_E4M3:  // with its row scale, when it has one
      for (int64_t c = c0; c < c1; c++)
        out[c - c0] = e4m3_to_f32(static_cast<const uint8_t*>(w.data)[first + c]) * (w.row_scales ? w.row_scales[row] : 1.0f);
      break;
    default: throw std::runtime_error(std::string("no kernel for weight dtype ") + dtype_name(w.dtype));
  }
}
}  // namespace

namespace {
// Row n of a float matrix in [out, in] terms; an [in, out] matrix is transposed through f32 first (one expert at a
// time: a few hundred MB at most for Scout's).
std::function<void(int64_t, float*)> output_rows(const Matrix& w, std::vector<float>& transposed) {
  const int64_t N = w.outputs(), K = w.inputs();
  if (!w.in_out) return [&w](int64_t n, float* out) { row_to_f32(w, n, out); };
  transposed.resize(size_t(N * K));
  const int64_t tile = 64;  // transposed in tiles, so neither side is read or written a row stride apart
  parallel_items((K + tile - 1) / tile, tile * N, [&](int64_t k_tile0, int64_t k_tile1) {
    std::vector<float> rows(size_t(tile * N));
    for (int64_t kt = k_tile0; kt < k_tile1; kt++) {
      const int64_t k0 = kt * tile, k1 = std::min(K, k0 + tile);
      for (int64_t k = k0; k < k1; k++) widen_range(w, k, 0, N, rows.data() + (k - k0) * N);
      for (int64_t n0 = 0; n0 < N; n0 += tile)
        for (int64_t n = n0; n < std::min(N, n0 + tile); n++)
          for (int64_t k = k0; k < k1; k++) transposed[n * K + k] = rows[(k - k0) * N + n];
    }
  });
  return [&transposed, K](int64_t n, float* out) { std::copy(transposed.begin() + n * K, transposed.begin() + (n + 1) * K, out); };
}

// Room for a quantized matrix's data followed (64-byte aligned) by its scales; returns where the scales start.
size_t layout_storage(WeightBytes& storage, size_t data_bytes, size_t scale_bytes) {
  const size_t scales_at = (data_bytes + 63) / 64 * 64;
  storage.assign(scales_at + scale_bytes, 0);
  return scales_at;
}

Matrix quantized_view(DType t, const WeightBytes& storage, int64_t N, int64_t K, size_t scales_at) {
  Matrix q;
  q.dtype = t;
  q.data = storage.data();
  q.rows = N;
  q.cols = K;
  if (t == DType::F8_E4M3) q.row_scales = reinterpret_cast<const float*>(storage.data() + scales_at);
  else q.scales = reinterpret_cast<const uint16_t*>(storage.data() + scales_at);
  return q;
}
}  // namespace

Matrix quantize_matrix(const Matrix& w, DType target, WeightBytes& storage) {
  const int64_t N = w.outputs(), K = w.inputs();
  std::vector<float> transposed;
  const std::function<void(int64_t, float*)> row = output_rows(w, transposed);
  if (target == DType::F8_E4M3) {
    const size_t scales_at = layout_storage(storage, size_t(N * K), size_t(N) * 4);
    auto* scales = reinterpret_cast<float*>(storage.data() + scales_at);
    parallel_items(N, 4 * K, [&](int64_t n0, int64_t n1) {
      std::vector<float> values(K);
      for (int64_t n = n0; n < n1; n++) {
        row(n, values.data());
        float amax = 0.0f;
        for (float v : values) amax = std::max(amax, std::fabs(v));
        scales[n] = std::max(amax / 448.0f, 1.0f / (448.0f * 512.0f));
        for (int64_t k = 0; k < K; k++) storage[n * K + k] = f32_to_e4m3(values[k] / scales[n]);
      }
    });
    return quantized_view(target, storage, N, K, scales_at);
  }
  const size_t scales_at = layout_storage(storage, size_t(quant_groups(N) * quant_group_bytes(target, K)),
                                          size_t(quant_groups(N) * quant_blocks(K) * kQuantRows) * 2);
  quantize_rows(target, N, K, row, storage.data(), reinterpret_cast<uint16_t*>(storage.data() + scales_at));
  return quantized_view(target, storage, N, K, scales_at);
}

Matrix pack_matrix(DType t, int64_t N, int64_t K, const std::function<void(int64_t, int8_t*, uint16_t*)>& row,
                   WeightBytes& storage) {
  const size_t scales_at = layout_storage(storage, size_t(quant_groups(N) * quant_group_bytes(t, K)),
                                          size_t(quant_groups(N) * quant_blocks(K) * kQuantRows) * 2);
  pack_rows(t, N, K, row, storage.data(), reinterpret_cast<uint16_t*>(storage.data() + scales_at));
  return quantized_view(t, storage, N, K, scales_at);
}

void row_to_f32(const Matrix& w, int64_t row, float* out) {
  if (is_block_quantized(w.dtype)) return dequantize_row(w.dtype, static_cast<const uint8_t*>(w.data), w.scales, w.cols, row, out);
  widen_range(w, row, 0, w.cols, out);
}

void to_f32(const Matrix& w, float* out) {
  for (int64_t r = 0; r < w.rows; r++) row_to_f32(w, r, out + r * w.cols);
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

void silu_mul(const float* gate, const float* up, int64_t stride, int64_t rows, int64_t width, float* out) {
  const KernelTable& k = active();
  pool()->parallel_for(rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> e(width);
    for (int64_t r = r0; r < r1; r++) {
      const float* g = gate + r * stride;
      for (int64_t i = 0; i < width; i++) e[i] = -g[i];
      k.exp_inplace(e.data(), width);
      // silu(g) * up = g / (1 + e^-g) * up
      for (int64_t i = 0; i < width; i++) out[r * width + i] = g[i] / (1.0f + e[i]) * up[r * stride + i];
    }
  }, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)));
}

void exp_in_place(float* x, int64_t n) { active().exp_inplace(x, n); }

void softmax_tile(float* scores, int64_t rows, int64_t n, const int64_t* lo, const int64_t* hi, float scale, float* max,
                  float* sum, float* rescale) {
  active().softmax_tile(scores, rows, n, lo, hi, scale, max, sum, rescale);
}

void add_in_place(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

}  // namespace l4
