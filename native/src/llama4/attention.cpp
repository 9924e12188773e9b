// Llama4TextAttention, as in transformers' modeling_llama4.py: q/k/v projections -> RoPE (+ QK L2 norm) on
// RoPE layers, or temperature tuning on NoPE layers -> causal softmax attention over the visible keys
// (chunked on chunked layers, GQA) -> o_proj.
#include <algorithm>
#include <cmath>

#include "../kernels/kernels.h"
#include "../thread_pool.h"
#include "layers.h"

namespace l4 {

namespace {

// Query positions per attention work item: its kv head's query heads take them together, so each key tile is read
// (and transposed) once for group x kQueryBlock rows.
constexpr int64_t kQueryBlock = 64;

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

// Rounds this call's keys or values ([rows, head_dim]) to what the cache will hold. BF16: to the nearest bf16. I8:
// symmetric per row, code = round(x * 127 / max|x|), x = code * (max|x| / 127); the codes and scales are kept, as the
// cache must store these very values (requantizing the rounded floats need not give back the same scale).
void round_to_cache(DType dtype, int64_t D, std::vector<float>& x, std::vector<int8_t>& codes, std::vector<float>& scales) {
  if (dtype == DType::BF16) {
    for (float& e : x) e = bf16_to_f32(f32_to_bf16(e));
  } else if (dtype == DType::I8) {
    const int64_t rows = int64_t(x.size()) / D;
    codes.resize(x.size());
    scales.resize(rows);
    for (int64_t r = 0; r < rows; r++) {
      float* row = x.data() + r * D;
      float amax = 0.0f;
      for (int64_t i = 0; i < D; i++) amax = std::max(amax, std::fabs(row[i]));
      const float scale = amax / 127.0f, inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      scales[r] = scale;
      for (int64_t i = 0; i < D; i++) {
        const int8_t code = int8_t(std::clamp(std::nearbyint(row[i] * inverse), -127.0f, 127.0f));
        codes[r * D + i] = code;
        row[i] = float(code) * scale;
      }
    }
  }
}

}  // namespace

void attention(const TextConfig& c, int64_t layer, const AttentionWeights& w, const Step& s, const KVLayer* cached,
               const std::vector<float>& inv_freq, const float* h, LayerKV& fresh, float* probs, Workspace& work,
               ScratchMeter& meter, float* out) {
  const int64_t nH = c.num_attention_heads, kvH = c.num_key_value_heads, D = c.head_dim;
  float* q = work.get(Workspace::kQuery, s.N * nH * D);
  float* attn = work.get(Workspace::kContext, s.N * nH * D);
  std::vector<float>& k = fresh.k;
  std::vector<float>& v = fresh.v;
  k.resize(s.N * kvH * D);
  v.resize(s.N * kvH * D);
  // q, attn, and each thread's scores of one work item (below): all its keys' (eager) or a tile's
  const size_t scored_keys = probs || s.eager_attention ? size_t(s.P + s.T) : size_t(kKeyTile);
  const size_t scratch = 2 * sizeof(float) * size_t(s.N * nH * D) +
                         size_t(num_threads()) * size_t(std::min<int64_t>(s.T, kQueryBlock)) * size_t(nH / kvH) * scored_keys * sizeof(float);
  meter.hold(scratch);

  matmul_batch({{h, s.N, w.q_proj, q}, {h, s.N, w.k_proj, k.data()}, {h, s.N, w.v_proj, v.data()}});
  add_bias(q, w.q_bias, s.N);
  add_bias(k.data(), w.k_bias, s.N);
  add_bias(v.data(), w.v_bias, s.N);
  if (c.use_rope[layer]) {
    apply_rope(q, s.N, nH, D, s.positions, inv_freq);
    apply_rope(k.data(), s.N, kvH, D, s.positions, inv_freq);
    if (c.use_qk_norm) {  // Llama4TextL2Norm on RoPE layers only
      rms_norm(q, nullptr, q, s.N * nH, D, float(c.rms_norm_eps));
      rms_norm(k.data(), nullptr, k.data(), s.N * kvH, D, float(c.rms_norm_eps));
    }
  } else if (c.attn_temperature_tuning) {
    // NoPE layers sharpen attention with distance: scale by log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1,
    // pos being the cache position (not the RoPE position), as transformers does.
    for (int64_t t = 0; t < s.T; t++) {
      float scale = std::log1p(std::floor((float(s.P + t) + 1.0f) / float(c.floor_scale))) * float(c.attn_scale) + 1.0f;
      for (int64_t b = 0; b < s.B; b++) {
        float* qr = q + (b * s.T + t) * nH * D;
        for (int64_t i = 0; i < nH * D; i++) qr[i] *= scale;
      }
    }
  }
  round_to_cache(s.kv_dtype, D, k, fresh.k_codes, fresh.k_scales);
  round_to_cache(s.kv_dtype, D, v, fresh.v_codes, fresh.v_scales);

  // Work items: (batch row, kv head, block of query positions), the kv head's query heads together so its
  // keys are read once for all of them. Rows of an item are (head in group, position).
  const int64_t group = nH / kvH, ring = cached ? cached->ring : 0;
  const int64_t block = std::min<int64_t>(s.T, kQueryBlock), blocks = (s.T + block - 1) / block;
  const float scaling = 1.0f / std::sqrt(float(D));
  parallel_items(s.B * kvH * blocks, block * group * (s.P + s.T) * D, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, qbuf, obuf;
    AttentionScratch tiles;
    std::vector<int64_t> from, to;
    std::vector<float*> probs_rows;
    std::vector<KeySegment> segments;
    for (int64_t item = begin; item < end; item++) {
      if (s.cancel && s.cancel->load()) throw CancelledError();
      const int64_t b = item / (kvH * blocks), kvh = (item / blocks) % kvH;
      const int64_t t0 = (item % blocks) * block, t1 = std::min(s.T, t0 + block), rows = group * (t1 - t0);
      qbuf.resize(rows * D);
      obuf.resize(rows * D);
      from.resize(rows);
      to.resize(rows);
      probs_rows.assign(probs ? rows : 0, nullptr);
      for (int64_t g = 0; g < group; g++)
        for (int64_t t = t0; t < t1; t++) {
          const int64_t r = g * (t1 - t0) + (t - t0), head = kvh * group + g, qpos = s.P + t;
          std::copy_n(q + ((b * s.T + t) * nH + head) * D, D, qbuf.data() + r * D);
          int64_t lo = 0;
          if (c.chunked[layer]) {  // keys in the same chunk as the query, chunks counted from the first real token
            const int64_t lp = s.left_padding[b];
            lo = std::max<int64_t>(0, lp + floor_div(qpos - lp, c.attention_chunk_size) * c.attention_chunk_size);
          }
          if (ring) lo = std::max<int64_t>(lo, s.P - ring);  // older keys have left the ring
          from[r] = lo;
          to[r] = qpos;
          if (probs) probs_rows[r] = probs + ((b * nH + head) * s.T + t) * (s.P + s.T);
        }
      // Keys from the first one any row sees: cached positions (a ring's may wrap once), then this call's.
      const int64_t first = from[0];  // positions' lower bounds grow with the position
      segments.clear();
      const int64_t fresh_row = kvH * D;
      for (int64_t pos = first; pos < s.P;) {  // runs of slots within a page (and within the ring)
        const int64_t slot = ring ? pos % ring : pos;
        int64_t count = std::min(s.P - pos, KVLayer::kPageSlots - slot % KVLayer::kPageSlots);
        if (ring) count = std::min(count, ring - slot);
        const KVLayer::Page& page = cached->pages[size_t(slot / KVLayer::kPageSlots)];
        const int64_t row = KVLayer::row_in_page(slot, b, kvh, kvH);
        const size_t at = size_t(row * D) * dtype_size(cached->dtype);
        Matrix keys{cached->dtype, page.k.data() + at, count, D, D}, values{cached->dtype, page.v.data() + at, count, D, D};
        if (cached->dtype == DType::I8) {
          keys.row_scales = page.k_scales.data() + row;
          values.row_scales = page.v_scales.data() + row;
        }
        segments.push_back({keys, values, pos});
        pos += count;
      }
      const int64_t fresh_first = std::max(first, s.P), fresh_offset = ((b * s.T + fresh_first - s.P) * kvH + kvh) * D;
      segments.push_back({Matrix{DType::F32, k.data() + fresh_offset, s.P + t1 - fresh_first, D, fresh_row},
                          Matrix{DType::F32, v.data() + fresh_offset, s.P + t1 - fresh_first, D, fresh_row},
                          fresh_first});
      const AttentionBlock block_rows{qbuf.data(), D, rows, from.data(), to.data(), s.valid[b].data(), scaling, obuf.data(), D,
                                      probs ? probs_rows.data() : nullptr};
      if (probs || s.eager_attention) attend(block_rows, segments, scores);
      else attend_tiled(block_rows, segments, tiles);
      for (int64_t g = 0; g < group; g++)
        for (int64_t t = t0; t < t1; t++)
          std::copy_n(obuf.data() + (g * (t1 - t0) + (t - t0)) * D, D,
                      attn + ((b * s.T + t) * nH + kvh * group + g) * D);
    }
  });
  linear(attn, s.N, w.o_proj, nullptr, out);
  add_bias(out, w.o_bias, s.N);
  meter.release(scratch);
}

}  // namespace l4
