// The portable kernel set: the same blocked algorithms as the SIMD sets, on one-float "vectors".
// Runs anywhere (arm64 included) and is the reference the SIMD sets are tested against.
#include <cmath>

#include "kernel_set.h"

namespace l4 {

namespace {

struct Scalar {
  using V = float;
  static constexpr int64_t kLanes = 1;
  static constexpr int kRows = 4, kPanelVectors = 4;  // GEMM micro-kernel: tokens x column vectors
  static constexpr int kDotRows = 4, kDotTokens = 4;   // nn.Linear tiles: weight rows x tokens
  static V zero() { return 0.0f; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V broadcast(float v) { return v; }
  static V fma(V a, V b, V acc) { return acc + a * b; }
  static float fma1(float a, float b, float acc) { return acc + a * b; }
  static void prefetch(const char*) {}
  static V exp(V x) { return std::exp(x); }
  static float hsum(V v) { return v; }
  static V sum_each(const V (&v)[kLanes]) { return v[0]; }
  static V max(V a, V b) { return a > b ? a : b; }
  static float hmax(V v) { return v; }
  static V mul(V a, V b) { return a * b; }
  static V sub(V a, V b) { return a - b; }
  template <class T>
  struct Widen;
};
template <>
struct Scalar::Widen<float> {
  static float load(const float* p) { return *p; }
  static float load1(const float* p) { return *p; }
};
template <>
struct Scalar::Widen<BF16Bits> {
  static float load(const BF16Bits* p) { return bf16_to_f32(p->bits); }
  static float load1(const BF16Bits* p) { return bf16_to_f32(p->bits); }
};
template <>
struct Scalar::Widen<F16Bits> {
  static float load(const F16Bits* p) { return f16_to_f32(p->bits); }
  static float load1(const F16Bits* p) { return f16_to_f32(p->bits); }
};

template <>
struct Scalar::Widen<F8Bits> {
  static float load(const F8Bits* p) { return e4m3_to_f32(p->bits); }
  static float load1(const F8Bits* p) { return e4m3_to_f32(p->bits); }
};

const KernelTable kScalar = kernel_set::make_table<Scalar>("scalar");

}  // namespace

const KernelTable& scalar_kernels() { return kScalar; }

}  // namespace l4
