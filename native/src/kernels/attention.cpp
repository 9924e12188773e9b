// Softmax attention over key segments, built on the product kernels: scores = q . k^T (nn.Linear layout:
// keys are weight rows), masked softmax per row, out = p . v (values in the [in, out] layout). attend() holds a
// row's scores over all keys (the probabilities eager attention returns); attend_tiled() goes through the keys a
// tile at a time with an online softmax, holding only a tile's scores.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.h"

namespace l4 {

namespace {
// From this head dimension on, scores are dot products of each query with each key (the keys read once, in memory
// order: what decode wants); below it, the vectors a dot product spans are too few to fill the kernel's lanes, and
// the scores come from a GEMM against the tile's keys transposed. Chosen by head dimension alone, so a model's
// decode and prefill always compute them the same way.
constexpr int64_t kDotHeadDim = 64;

// Keys or values as the product kernels read them: an int8 KV cache's (I8, a scale per row) are widened into `buffer`
// first, a tile at a time, the same way in decode and prefill.
Matrix readable(const Matrix& m, std::vector<float>& buffer) {
  if (m.dtype != DType::I8) return m;
  buffer.resize(size_t(m.rows * m.cols));
  to_f32(m, buffer.data());
  Matrix widened{DType::F32, buffer.data(), m.rows, m.cols};
  widened.in_out = m.in_out;
  return widened;
}

// Asks for a tile's values while its scores and softmax are computed. A decode step reads every cached key and value
// from memory once; without this, p . v waited for them (one kv head's attention over 512 cached positions took
// 42 us instead of 29 us in a micro-benchmark).
void prefetch_rows(const Matrix& m) {
  const size_t row_bytes = size_t(m.cols) * dtype_size(m.dtype), stride = size_t(m.ld()) * dtype_size(m.dtype);
  const char* base = static_cast<const char*>(m.data);
  for (int64_t j = 0; j < m.rows; j++)
    for (size_t byte = 0; byte < row_bytes; byte += 64) __builtin_prefetch(base + j * stride + byte);
}
}  // namespace

void attend(const AttentionBlock& a, const std::vector<KeySegment>& segments, std::vector<float>& scores) {
  const int64_t D = segments.front().keys.cols, first = segments.front().first;
  int64_t n = 0;
  for (const KeySegment& s : segments) n += s.keys.rows;
  if (int64_t(scores.size()) < a.rows * n + D * n) scores.resize(a.rows * n + D * n);
  std::vector<float> widened;
  if (D >= kDotHeadDim) {  // scores as attend_tiled computes them (see there)
    for (const KeySegment& s : segments)
      attention_scores_serial(Product{a.q, a.ldq, a.rows, readable(s.keys, widened), scores.data() + (s.first - first), n}, 0, s.keys.rows);
  } else {
    float* keys_t = scores.data() + a.rows * n;
    std::vector<float> key_row(D);
    for (const KeySegment& s : segments)
      for (int64_t j = 0; j < s.keys.rows; j++) {
        row_to_f32(s.keys, j, key_row.data());
        for (int64_t d = 0; d < D; d++) keys_t[d * n + (s.first - first) + j] = key_row[d];
      }
    Matrix kt{DType::F32, keys_t, D, n};
    kt.in_out = true;
    matmul_in_out_serial(Product{a.q, a.ldq, a.rows, kt, scores.data(), n}, 0, n);
  }

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
    matmul_in_out_serial(Product{scores.data() + (s.first - first), n, a.rows, readable(s.values, widened), a.out, a.ldo, true}, 0, D);
}

void attend_tiled(const AttentionBlock& a, const std::vector<KeySegment>& segments, AttentionScratch& scratch) {
  const int64_t D = segments.front().keys.cols, rows = a.rows;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  scratch.scores.resize(rows * kKeyTile);
  scratch.keys_t.resize(D * kKeyTile);
  scratch.max.assign(rows, minus_inf);  // running max of each row's scaled scores
  scratch.sum.assign(rows, 0.0f);       // running sum of e^(score - max)
  scratch.rescale.resize(rows);
  scratch.lo.resize(rows);
  scratch.hi.resize(rows);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < D; i++) a.out[r * a.ldo + i] = 0.0f;
  int64_t lowest = a.visible_from[0], highest = a.visible_to[0];
  for (int64_t r = 1; r < rows; r++) {
    lowest = std::min(lowest, a.visible_from[r]);
    highest = std::max(highest, a.visible_to[r]);
  }
  const int64_t keys_begin = segments.front().first, keys_end = segments.back().first + segments.back().keys.rows;
  const int64_t begin = std::max(lowest, keys_begin), end = std::min(highest + 1, keys_end);
  float* scores = scratch.scores.data();
  float* keys_t = scratch.keys_t.data();
  // Tiles are the kKeyTile positions [t0, t0 + kKeyTile) with t0 a multiple of kKeyTile, indexed from t0, whatever
  // segments hold their keys: every query goes through the same tiles, rescalings and sums whether it is decoded
  // alone or prefilled among others, so both give the same bits. A tile may take its keys from several segments
  // (the cache's pages or ring, this call's keys); positions without keys, or that a row cannot see, weigh 0.
  for (int64_t t0 = begin / kKeyTile * kKeyTile; t0 < end; t0 += kKeyTile) {
    const int64_t n = std::min(end, t0 + kKeyTile) - t0;
    std::vector<AttentionScratch::Piece>& pieces = scratch.pieces;
    pieces.clear();
    for (const KeySegment& seg : segments) {
      const int64_t lo = std::max(t0, seg.first), hi = std::min(t0 + n, seg.first + seg.keys.rows);
      if (lo < hi) pieces.push_back({&seg, lo - seg.first, hi - lo, lo - t0});
    }
    for (const AttentionScratch::Piece& piece : pieces) prefetch_rows(piece.segment->values.slice_rows(piece.row, piece.count));
    if (D >= kDotHeadDim) {  // scores = q . k per key, reading the keys once (see kDotHeadDim)
      for (const AttentionScratch::Piece& piece : pieces)
        attention_scores_serial(Product{a.q, a.ldq, rows,
                                        readable(piece.segment->keys.slice_rows(piece.row, piece.count), scratch.widened_keys),
                                        scores + piece.at, n},
                                0, piece.count);
    } else {
      // Scores = q . K^T with K^T [D, n] as an [in, out] matrix: the GEMM kernels keep every score in a register
      // down the head dimension, rather than dot products that span a few vectors each.
      std::fill(keys_t, keys_t + D * n, 0.0f);
      for (const AttentionScratch::Piece& piece : pieces) {
        const Matrix keys = piece.segment->keys.slice_rows(piece.row, piece.count);
        scratch.key_row.resize(D);
        for (int64_t j = 0; j < piece.count; j++) {
          const float* row = keys.dtype == DType::F32 ? static_cast<const float*>(keys.data) + j * keys.ld() : scratch.key_row.data();
          if (keys.dtype != DType::F32) row_to_f32(keys, j, scratch.key_row.data());
          for (int64_t d = 0; d < D; d++) keys_t[d * n + piece.at + j] = row[d];
        }
      }
      Matrix kt{DType::F32, keys_t, D, n};
      kt.in_out = true;
      matmul_in_out_serial(Product{a.q, a.ldq, rows, kt, scores, n}, 0, n);
    }
    const int64_t with_keys_from = std::max(t0, keys_begin) - t0, with_keys_to = std::min(t0 + n, keys_end) - t0;
    bool padded = false;  // padding positions in the tile: masked by hand before the kernel scales the rest
    for (int64_t j = with_keys_from; j < with_keys_to && !padded; j++) padded = !a.valid[t0 + j];
    for (int64_t r = 0; r < rows; r++) {
      scratch.lo[r] = std::clamp(std::max(a.visible_from[r] - t0, with_keys_from), int64_t(0), n);
      scratch.hi[r] = std::clamp(std::min(a.visible_to[r] + 1 - t0, with_keys_to), scratch.lo[r], n);
      if (padded)
        for (int64_t j = scratch.lo[r]; j < scratch.hi[r]; j++)
          if (!a.valid[t0 + j]) scores[r * n + j] = minus_inf;
    }
    softmax_tile(scores, rows, n, scratch.lo.data(), scratch.hi.data(), a.scale, scratch.max.data(), scratch.sum.data(),
                 scratch.rescale.data());
    for (int64_t r = 0; r < rows; r++)
      if (scratch.rescale[r] != 1.0f)
        for (int64_t i = 0; i < D; i++) a.out[r * a.ldo + i] *= scratch.rescale[r];
    for (const AttentionScratch::Piece& piece : pieces)  // out += p . v, continuing each output's sum in key order
      matmul_in_out_serial(Product{scores + piece.at, n, rows,
                                   readable(piece.segment->values.slice_rows(piece.row, piece.count), scratch.widened_values),
                                   a.out, a.ldo, true},
                           0, D);
  }
  for (int64_t r = 0; r < rows; r++) {
    const float inv = scratch.sum[r] > 0.0f ? 1.0f / scratch.sum[r] : 0.0f;  // a padding query: a zero output
    for (int64_t i = 0; i < D; i++) a.out[r * a.ldo + i] *= inv;
  }
}

}  // namespace l4
