// Element types of checkpoint tensors and their conversion to f32 (activations are always f32).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace l4 {

// Q8 / Q4 are the engine's own block-quantized weight layouts (kernels/quantized.h), never a checkpoint's.
enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, Q8, Q4 };

// Returns false for a name safetensors does not define.
bool dtype_from_name(const std::string& name, DType* out);
const char* dtype_name(DType t);
size_t dtype_size(DType t);  // 0 for Q8 / Q4, whose size is per block (quantized.h)

// static: the SIMD kernel files inline these too, and must not lend their copies to other files.
static inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, as torch's .to(torch.bfloat16).
static inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000) return uint16_t((bits >> 16) | 0x40);  // keep NaN a NaN
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// float8 e4m3fn (torch.float8_e4m3fn): 4 exponent bits (bias 7), 3 mantissa bits, no infinities, largest 448.
// Its bits shifted into a half-precision pattern give the value times 2^-8 (subnormals included).
inline uint16_t e4m3_as_f16_bits(uint8_t b) { return uint16_t((b & 0x7f) << 7 | (b & 0x80) << 8); }
float e4m3_to_f32(uint8_t b);
// Round to nearest (ties to even), saturating at +-448, as fbgemm's and compressed-tensors' casts (after their clamp).
uint8_t f32_to_e4m3(float f);

}  // namespace l4
