// Llama4TextAttention, as in transformers' modeling_llama4.py: q/k/v projections -> RoPE (+ QK L2 norm) on
// RoPE layers, or temperature tuning on NoPE layers -> causal softmax attention over the visible keys
// (chunked on chunked layers, GQA) -> o_proj.
#include <cmath>
#include <limits>

#include "../kernels/kernels.h"
#include "../thread_pool.h"
#include "layers.h"

namespace l4 {

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

void add_bias(float* y, const std::vector<float>& bias, int64_t rows) {
  if (bias.empty()) return;
  const int64_t n = int64_t(bias.size());
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++) y[r * n + i] += bias[i];
}

// Llama 4 RoPE: consecutive pairs (2i, 2i+1) of each head rotated as complex numbers.
void apply_rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const std::vector<int32_t>& positions,
                const std::vector<float>& inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t n = 0; n < tokens; n++) {
    for (int64_t i = 0; i < half; i++) {
      float angle = float(positions[n]) * inv_freq[i];
      cos_t[i] = std::cos(angle);
      sin_t[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < heads; h++) {
      float* v = x + (n * heads + h) * head_dim;
      for (int64_t i = 0; i < half; i++) {
        float re = v[2 * i], im = v[2 * i + 1];
        v[2 * i] = re * cos_t[i] - im * sin_t[i];
        v[2 * i + 1] = re * sin_t[i] + im * cos_t[i];
      }
    }
  }
}

}  // namespace

void attention(const TextConfig& c, int64_t layer, const AttentionWeights& w, const Step& s, const KVLayer* cached,
               const std::vector<float>& inv_freq, const float* h, std::vector<float>& k, std::vector<float>& v,
               float* probs, ScratchMeter& meter, float* out) {
  const int64_t nH = c.num_attention_heads, kvH = c.num_key_value_heads, D = c.head_dim;
  std::vector<float> q(s.N * nH * D), attn(s.N * nH * D);
  k.resize(s.N * kvH * D);
  v.resize(s.N * kvH * D);
  // q, attn, and the per-thread scores
  const size_t scratch = bytes_of(q) + bytes_of(attn) +
                         size_t(std::min<int64_t>(num_threads(), s.B * nH * s.T)) * size_t(s.P + s.T) * sizeof(float);
  meter.hold(scratch);

  linear(h, s.N, w.q_proj, nullptr, q.data());
  linear(h, s.N, w.k_proj, nullptr, k.data());
  linear(h, s.N, w.v_proj, nullptr, v.data());
  add_bias(q.data(), w.q_bias, s.N);
  add_bias(k.data(), w.k_bias, s.N);
  add_bias(v.data(), w.v_bias, s.N);
  if (c.use_rope[layer]) {
    apply_rope(q.data(), s.N, nH, D, s.positions, inv_freq);
    apply_rope(k.data(), s.N, kvH, D, s.positions, inv_freq);
    if (c.use_qk_norm) {  // Llama4TextL2Norm on RoPE layers only
      rms_norm(q.data(), nullptr, q.data(), s.N * nH, D, float(c.rms_norm_eps));
      rms_norm(k.data(), nullptr, k.data(), s.N * kvH, D, float(c.rms_norm_eps));
    }
  } else if (c.attn_temperature_tuning) {
    // NoPE layers sharpen attention with distance: scale by log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1,
    // pos being the cache position (not the RoPE position), as transformers does.
    for (int64_t t = 0; t < s.T; t++) {
      float scale = std::log1p(std::floor((float(s.P + t) + 1.0f) / float(c.floor_scale))) * float(c.attn_scale) + 1.0f;
      for (int64_t b = 0; b < s.B; b++) {
        float* qr = q.data() + (b * s.T + t) * nH * D;
        for (int64_t i = 0; i < nH * D; i++) qr[i] *= scale;
      }
    }
  }

  const bool chunked = c.chunked[layer];
  const int64_t chunk = c.attention_chunk_size;
  const int64_t group = nH / kvH;
  const float scaling = 1.0f / std::sqrt(float(D));
  auto key_row = [&](const std::vector<float>& fresh, const std::vector<float>* past_buf, int64_t b, int64_t kvh,
                     int64_t pos) -> const float* {
    if (pos >= s.P) return fresh.data() + ((b * s.T + (pos - s.P)) * kvH + kvh) * D;
    int64_t slot = cached->ring ? pos % cached->ring : pos;
    return past_buf->data() + ((slot * s.B + b) * kvH + kvh) * D;
  };
  parallel_items(s.B * nH * s.T, D * (s.P + s.T), [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; item++) {
      const int64_t b = item / (nH * s.T), head = (item / s.T) % nH, t = item % s.T;
      const int64_t qpos = s.P + t, kvh = head / group;
      const float* qv = q.data() + ((b * s.T + t) * nH + head) * D;
      float* ctx = attn.data() + ((b * s.T + t) * nH + head) * D;
      int64_t lo = 0;
      if (chunked) {  // keys in the same chunk as the query, chunks counted from the first real token
        const int64_t lp = s.left_padding[b];
        lo = std::max<int64_t>(0, lp + floor_div(qpos - lp, chunk) * chunk);
      }
      if (cached && cached->ring) lo = std::max<int64_t>(lo, s.P - cached->ring);
      scores.assign(qpos - lo + 1, -std::numeric_limits<float>::infinity());
      float best = -std::numeric_limits<float>::infinity();
      for (int64_t pos = lo; pos <= qpos; pos++) {
        if (!s.valid[b][pos]) continue;
        const float* kr = key_row(k, cached ? &cached->k : nullptr, b, kvh, pos);
        float dot = 0;
        for (int64_t i = 0; i < D; i++) dot += qv[i] * kr[i];
        scores[pos - lo] = dot * scaling;
        best = std::max(best, scores[pos - lo]);
      }
      std::fill(ctx, ctx + D, 0.0f);
      if (best == -std::numeric_limits<float>::infinity()) continue;  // a padding query: nothing to attend to
      float sum = 0;
      for (auto& sc : scores) sum += (sc = std::exp(sc - best));
      const float inv_sum = 1.0f / sum;
      float* probs_row = probs ? probs + ((b * nH + head) * s.T + t) * (s.P + s.T) : nullptr;
      for (int64_t pos = lo; pos <= qpos; pos++) {
        const float p = scores[pos - lo] * inv_sum;
        if (probs_row) probs_row[pos] = p;
        if (p == 0) continue;
        const float* vr = key_row(v, cached ? &cached->v : nullptr, b, kvh, pos);
        for (int64_t i = 0; i < D; i++) ctx[i] += p * vr[i];
      }
    }
  });
  linear(attn.data(), s.N, w.o_proj, nullptr, out);
  add_bias(out, w.o_bias, s.N);
  meter.release(scratch);
}

}  // namespace l4
