// Overflow-checked size arithmetic for sizes that come from files or callers (config.json, safetensors
// headers, request shapes). A product that wraps around 64 bits (heads x head_dim = 0, say) would later
// divide by zero or allocate the wrong amount; here it becomes an error naming what was computed.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace l4 {

// The product of non-negative factors, or an error "WHAT: a x b x ... overflows" when it passes `limit`.
inline int64_t checked_product(std::initializer_list<int64_t> factors, const std::string& what,
                               int64_t limit = INT64_MAX) {
  int64_t p = 1;
  bool over = false;
  for (int64_t f : factors) {
    if (f < 0) throw std::runtime_error(what + ": negative size " + std::to_string(f));
    if (!over && __builtin_mul_overflow(p, f, &p)) over = true;
  }
  for (int64_t f : factors)
    if (f == 0) return 0;
  if (over || p > limit) {
    std::string s;
    for (int64_t f : factors) s += (s.empty() ? "" : " x ") + std::to_string(f);
    throw std::runtime_error(what + ": " + s + (over ? " overflows 64-bit arithmetic" : " is larger than " + std::to_string(limit)));
  }
  return p;
}

}  // namespace l4
