// Softmax attention over key segments, built on the product kernels: scores = q . k^T (nn.Linear layout:
// keys are weight rows), masked softmax per row, out = p . v (values in the [in, out] layout).
#include <cmath>
#include <limits>

#include "kernels.h"

namespace l4 {

void attend(const AttentionBlock& a, const std::vector<KeySegment>& segments, std::vector<float>& scores) {
  const int64_t D = segments.front().keys.cols, first = segments.front().first;
  int64_t n = 0;
  for (const KeySegment& s : segments) n += s.keys.rows;
  if (int64_t(scores.size()) < a.rows * n) scores.resize(a.rows * n);
  for (const KeySegment& s : segments)
    linear_serial(Product{a.q, a.ldq, a.rows, s.keys, scores.data() + (s.first - first), n}, 0, s.keys.rows);

  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < a.rows; r++) {
    float* row = scores.data() + r * n;
    const int64_t lo = std::max(a.visible_from[r], first) - first, hi = std::min(a.visible_to[r] - first, n - 1);
    float best = minus_inf;
    for (int64_t j = 0; j < n; j++) {
      const bool visible = j >= lo && j <= hi && a.valid[first + j];
      row[j] = visible ? row[j] * a.scale : minus_inf;
      best = std::max(best, row[j]);
    }
    if (best == minus_inf) {  // a padding query: nothing to attend to, a zero output
      for (int64_t j = 0; j < n; j++) row[j] = 0.0f;
      continue;
    }
    for (int64_t j = 0; j < n; j++) row[j] -= best;  // masked: -inf, whose e^x is 0
    exp_in_place(row, n);
    float sum = 0;
    for (int64_t j = 0; j < n; j++) sum += row[j];
    const float inv_sum = 1.0f / sum;
    for (int64_t j = 0; j < n; j++) row[j] *= inv_sum;
    if (a.probs)
      for (int64_t j = lo; j <= hi; j++) a.probs[r][first + j] = row[j];
  }

  for (int64_t r = 0; r < a.rows; r++)
    for (int64_t i = 0; i < D; i++) a.out[r * a.ldo + i] = 0.0f;
  // Masked positions weigh exactly 0, so they leave each output's running sum unchanged.
  for (const KeySegment& s : segments)
    matmul_in_out_serial(Product{scores.data() + (s.first - first), n, a.rows, s.values, a.out, a.ldo, true}, 0, D);
}

}  // namespace l4
