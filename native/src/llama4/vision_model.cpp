// Llama 4 vision tower, read top to bottom like transformers' modeling_llama4.py:
// unfold patches -> linear -> class token appended last -> + positions -> LayerNorm ->
// [LayerNorm -> attention with 2-D RoPE -> residual -> LayerNorm -> GELU MLP -> residual] x L ->
// LayerNorm -> drop the class token -> pixel shuffle -> adapter MLP -> multi_modal_projector.
#include "vision_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "../thread_pool.h"
#include "text_model.h"  // CancelledError

namespace l4 {

namespace {

// nn.LayerNorm's default: Llama4VisionModel builds its LayerNorms without config.norm_eps.
const float kLayerNormEps = 1e-5f;
// Queries per attention work item: their scores against a whole tile stay in cache.
const int64_t kQueryBlock = 64;

// Splits rows of `row_cost` operations each across the thread pool.
void for_rows(int64_t rows, int64_t row_cost, const std::function<void(int64_t, int64_t)>& fn) {
  pool()->parallel_for(rows, fn, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_cost)));
}

void layer_norm_rows(const float* x, const LayerNormWeights& w, float* y, int64_t rows, int64_t dim) {
  for_rows(rows, 4 * dim, [&](int64_t r0, int64_t r1) {
    layer_norm(x + r0 * dim, w.weight.data(), w.bias.data(), y + r0 * dim, r1 - r0, dim, kLayerNormEps);
  });
}

void gelu_in_place(float* x, int64_t n) {
  for_rows(n, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) x[i] = gelu(x[i]);
  });
}

// Llama4UnfoldConvolution's nn.Unfold: every patch flattened channel-major (channel, row, column),
// patches in row-major order over the tile. pixels: [tiles, channels, size, size].
std::vector<float> unfold(const float* pixels, int64_t tiles, int64_t channels, int64_t size, int64_t patch) {
  const int64_t side = size / patch, patch_len = channels * patch * patch;
  std::vector<float> out(tiles * side * side * patch_len);
  for (int64_t t = 0; t < tiles; t++)
    for (int64_t py = 0; py < side; py++)
      for (int64_t px = 0; px < side; px++) {
        float* dst = out.data() + ((t * side + py) * side + px) * patch_len;
        for (int64_t ch = 0; ch < channels; ch++)
          for (int64_t dy = 0; dy < patch; dy++) {
            const float* src = pixels + ((t * channels + ch) * size + py * patch + dy) * size + px * patch;
            std::memcpy(dst + (ch * patch + dy) * patch, src, sizeof(float) * patch);
          }
      }
  return out;
}

// vision_apply_rotary_emb: consecutive pairs (2i, 2i+1) of every head turned as complex numbers by
// the angles of their token's place in the tile (the same for all heads). x: [tiles * tokens, heads, head_dim].
void apply_rope_2d(float* x, int64_t rows, int64_t tokens, int64_t heads, int64_t head_dim,
                   const std::vector<float>& cos_t, const std::vector<float>& sin_t) {
  const int64_t half = head_dim / 2;
  for_rows(rows, 6 * heads * half, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* c = cos_t.data() + (r % tokens) * half;
      const float* s = sin_t.data() + (r % tokens) * half;
      for (int64_t h = 0; h < heads; h++) {
        float* v = x + (r * heads + h) * head_dim;
        for (int64_t i = 0; i < half; i++) {
          const float re = v[2 * i], im = v[2 * i + 1];
          v[2 * i] = re * c[i] - im * s[i];
          v[2 * i + 1] = re * s[i] + im * c[i];
        }
      }
    }
  });
}

// vision_eager_attention_forward: every token attends to all tokens of its own tile (no mask).
// q, k, v, out: [tiles, tokens, heads, head_dim]. Work items are (tile, head, block of queries), and
// their two products run on the SIMD kernels over per-head contiguous copies of q, k and v.
void tile_attention(const float* q, const float* k, const float* v, int64_t tiles, int64_t tokens, int64_t heads,
                    int64_t head_dim, float* out) {
  const int64_t groups = tiles * heads, group_size = tokens * head_dim;
  std::vector<float> qh(groups * group_size), kh(groups * group_size), vh(groups * group_size);
  for_rows(tiles * tokens, 3 * heads * head_dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t t = r / tokens, n = r % tokens;
      for (int64_t h = 0; h < heads; h++) {
        const int64_t dst = ((t * heads + h) * tokens + n) * head_dim, src = (r * heads + h) * head_dim;
        std::memcpy(qh.data() + dst, q + src, sizeof(float) * head_dim);
        std::memcpy(kh.data() + dst, k + src, sizeof(float) * head_dim);
        std::memcpy(vh.data() + dst, v + src, sizeof(float) * head_dim);
      }
    }
  });
  const float scaling = 1.0f / std::sqrt(float(head_dim));
  const int64_t blocks = (tokens + kQueryBlock - 1) / kQueryBlock;
  pool()->parallel_for(groups * blocks, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, context;
    for (int64_t item = begin; item < end; item++) {
      const int64_t g = item / blocks, q0 = (item % blocks) * kQueryBlock, nq = std::min(kQueryBlock, tokens - q0);
      const Matrix keys{DType::F32, kh.data() + g * group_size, tokens, head_dim};
      const Matrix values{DType::F32, vh.data() + g * group_size, tokens, head_dim};  // [in = tokens, out = head_dim]
      scores.resize(nq * tokens);
      context.resize(nq * head_dim);
      attention_scores_serial(Product{qh.data() + g * group_size + q0 * head_dim, head_dim, nq, keys, scores.data(), tokens}, 0, tokens);
      for (int64_t j = 0; j < nq; j++) {
        float* row = scores.data() + j * tokens;
        float best = -INFINITY;
        for (int64_t i = 0; i < tokens; i++) best = std::max(best, row[i] *= scaling);
        float sum = 0;
        for (int64_t i = 0; i < tokens; i++) sum += (row[i] = std::exp(row[i] - best));
        const float inv_sum = 1.0f / sum;
        for (int64_t i = 0; i < tokens; i++) row[i] *= inv_sum;
      }
      matmul_in_out_serial(Product{scores.data(), tokens, nq, values, context.data(), head_dim}, 0, head_dim);
      const int64_t t = g / heads, h = g % heads;
      for (int64_t j = 0; j < nq; j++)
        std::memcpy(out + ((t * tokens + q0 + j) * heads + h) * head_dim, context.data() + j * head_dim,
                    sizeof(float) * head_dim);
    }
  });
}

// transformers' pixel_shuffle for one tile: [side, side, channels] patches -> [out_side^2, channels *
// (side / out_side)^2], through its two view + permute steps (the widths are regrouped first, then the heights).
void pixel_shuffle(const float* in, int64_t side, int64_t channels, int64_t out_side, float* out) {
  const int64_t wide = channels * side / out_side;  // channels after the first view
  const int64_t deep = wide * side / out_side;      // channels after the second
  for (int64_t h2 = 0; h2 < out_side; h2++)
    for (int64_t w2 = 0; w2 < out_side; w2++)
      for (int64_t c3 = 0; c3 < deep; c3++) {
        const int64_t hc = h2 * deep + c3, h = hc / wide, c2 = hc % wide;
        const int64_t wc = w2 * wide + c2, w = wc / channels, c = wc % channels;
        out[(h2 * out_side + w2) * deep + c3] = in[(h * side + w) * channels + c];
      }
}

}  // namespace

VisionModel::VisionModel(const VisionConfig& config, VisionWeights weights)
    : config_(config), weights_(std::move(weights)) {
  const std::vector<float> angles = config_.rope_angles();
  rope_cos_.resize(angles.size());
  rope_sin_.resize(angles.size());
  for (size_t i = 0; i < angles.size(); i++) {
    rope_cos_[i] = std::cos(angles[i]);
    rope_sin_[i] = std::sin(angles[i]);
  }
}

void VisionModel::validate(const ImageRequest& r) const {
  const VisionConfig& c = config_;
  const std::string S = std::to_string(c.image_size), C = std::to_string(c.num_channels);
  if (r.tiles < 1) throw std::runtime_error("encode_images: tiles must be >= 1, got " + std::to_string(r.tiles));
  if (r.height != c.image_size || r.width != c.image_size)
    throw std::runtime_error("encode_images: tiles of " + std::to_string(r.height) + "x" + std::to_string(r.width) +
                             " pixels, but the vision tower takes " + S + "x" + S +
                             " (vision_config.image_size): pixel_values must be [tiles, " + C + ", " + S + ", " + S + "]");
  // tiles comes from JS unchecked: compare by division so a huge value cannot overflow into a match.
  const int64_t per_tile = c.num_channels * r.height * r.width;
  const int64_t values = int64_t(r.pixel_values.size());
  const int64_t expected = r.tiles <= values / per_tile ? r.tiles * per_tile : -1;
  if (values != expected)
    throw std::runtime_error("encode_images: pixel_values has " + std::to_string(r.pixel_values.size()) +
                             " values, expected tiles x channels x height x width = " + std::to_string(r.tiles) + " x " +
                             C + " x " + S + " x " + S + " = " +
                             (r.tiles <= INT64_MAX / per_tile ? std::to_string(r.tiles * per_tile) : "more than int64 holds"));
}

ImageResult VisionModel::encode(const ImageRequest& req, const std::atomic<bool>& cancel) {
  std::lock_guard<std::mutex> lock(busy_);
  validate(req);
  const VisionConfig& c = config_;
  const VisionWeights& w = weights_;
  const int64_t T = req.tiles, P = c.patches_per_side, patches = P * P, N = patches + 1;
  const int64_t D = c.hidden_size, heads = c.num_attention_heads, I = c.intermediate_size;
  const int64_t rows = T * N;
  ImageResult result;
  result.tokens_per_tile = c.tokens_per_tile;

  // --- Llama4UnfoldConvolution, then the class token appended last and the learned positions ---
  std::vector<float> x(rows * D);
  {
    const std::vector<float> unfolded = unfold(req.pixel_values.data(), T, c.num_channels, c.image_size, c.patch_size);
    std::vector<float> embedded(T * patches * D);
    linear(unfolded.data(), T * patches, w.patch_embedding, nullptr, embedded.data());
    for (int64_t t = 0; t < T; t++) {
      std::memcpy(x.data() + t * N * D, embedded.data() + t * patches * D, sizeof(float) * patches * D);
      std::memcpy(x.data() + (t * N + patches) * D, w.class_embedding.data(), sizeof(float) * D);
    }
  }
  for (int64_t r = 0; r < rows; r++) add_in_place(x.data() + r * D, w.positional_embedding.data() + (r % N) * D, D);
  layer_norm_rows(x.data(), w.layernorm_pre, x.data(), rows, D);
  const bool keep_hidden = req.output_hidden_states;
  if (keep_hidden) {
    result.hidden_states.reserve((c.num_hidden_layers + 1) * rows * D);
    result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());
  }

  // --- Llama4VisionEncoder ---
  std::vector<float> h(rows * D), q(rows * D), k(rows * D), v(rows * D), attn(rows * D), branch(rows * D);
  std::vector<float> mlp_hidden(rows * I);
  for (const VisionEncoderLayerWeights& lw : w.layers) {
    if (cancel.load()) throw CancelledError();
    // Llama4VisionAttention
    const AttentionWeights& aw = lw.self_attn;
    layer_norm_rows(x.data(), lw.input_layernorm, h.data(), rows, D);
    linear(h.data(), rows, aw.q_proj, aw.q_bias.data(), q.data());
    linear(h.data(), rows, aw.k_proj, aw.k_bias.data(), k.data());
    linear(h.data(), rows, aw.v_proj, aw.v_bias.data(), v.data());
    apply_rope_2d(q.data(), rows, N, heads, c.head_dim, rope_cos_, rope_sin_);
    apply_rope_2d(k.data(), rows, N, heads, c.head_dim, rope_cos_, rope_sin_);
    tile_attention(q.data(), k.data(), v.data(), T, N, heads, c.head_dim, attn.data());
    linear(attn.data(), rows, aw.o_proj, aw.o_bias.data(), branch.data());
    add_in_place(x.data(), branch.data(), rows * D);
    // Llama4VisionMLP: fc2(GELU(fc1(x)))
    layer_norm_rows(x.data(), lw.post_attention_layernorm, h.data(), rows, D);
    linear(h.data(), rows, lw.fc1, lw.fc1_bias.data(), mlp_hidden.data());
    gelu_in_place(mlp_hidden.data(), rows * I);
    linear(mlp_hidden.data(), rows, lw.fc2, lw.fc2_bias.data(), branch.data());
    add_in_place(x.data(), branch.data(), rows * D);
    if (keep_hidden) result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());
  }
  if (cancel.load()) throw CancelledError();

  // --- layernorm_post, drop the class token, Llama4VisionPixelShuffleMLP ---
  layer_norm_rows(x.data(), w.layernorm_post, h.data(), rows, D);
  const int64_t tokens = T * c.tokens_per_tile;
  std::vector<float> shuffled(tokens * I);  // intermediate_size = hidden_size / ratio^2, checked with the config
  for (int64_t t = 0; t < T; t++)
    pixel_shuffle(h.data() + t * N * D, P, D, c.shuffled_side, shuffled.data() + t * c.tokens_per_tile * I);
  // Llama4VisionMLP2: GELU(fc2(GELU(fc1(x)))), no biases
  std::vector<float> adapter_hidden(tokens * c.projector_input_dim), features(tokens * c.projector_output_dim);
  linear(shuffled.data(), tokens, w.adapter_fc1, nullptr, adapter_hidden.data());
  gelu_in_place(adapter_hidden.data(), tokens * c.projector_input_dim);
  linear(adapter_hidden.data(), tokens, w.adapter_fc2, nullptr, features.data());
  gelu_in_place(features.data(), tokens * c.projector_output_dim);

  // --- Llama4MultiModalProjector: to rows of the text model's hidden size ---
  result.image_features.resize(tokens * w.projector.rows);
  linear(features.data(), tokens, w.projector, nullptr, result.image_features.data());
  if (req.output_vision_features) result.vision_features = std::move(features);
  return result;
}

}  // namespace l4
