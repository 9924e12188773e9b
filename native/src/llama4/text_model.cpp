// Llama 4 text forward pass, read top to bottom like transformers' modeling_llama4.py:
// embed -> [RMSNorm -> Attention -> residual -> RMSNorm -> MLP or MoE -> residual] x L -> norm -> lm_head.
#include "text_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>

#include "../thread_pool.h"

namespace l4 {

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Shapes and masks shared by every layer of one forward call.
struct Step {
  int64_t B, T, P, N;                          // batch, new tokens, past length, B*T
  std::vector<std::vector<uint8_t>> valid;     // [B][P+T] key positions that are not padding
  std::vector<int64_t> left_padding;           // [B] leading padding positions (chunk boundaries shift by it)
  std::vector<int32_t> positions;              // [N] RoPE positions
};

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

// Llama4TextMLP: down_proj(silu(gate_proj(x)) * up_proj(x)).
void mlp(const MlpWeights& w, const float* x, int64_t tokens, float* out) {
  const int64_t inner = w.gate_proj.rows;
  std::vector<float> gate(tokens * inner), up(tokens * inner);
  linear(x, tokens, w.gate_proj, nullptr, gate.data());
  linear(x, tokens, w.up_proj, nullptr, up.data());
  for (int64_t i = 0; i < tokens * inner; i++) gate[i] = silu(gate[i]) * up[i];
  linear(gate.data(), tokens, w.down_proj, nullptr, out);
}

// Tracks the bytes of working buffers held at once during a forward call, and their peak.
class ScratchMeter {
 public:
  void hold(size_t bytes) { peak_ = std::max(peak_, current_ += bytes); }
  void release(size_t bytes) { current_ -= bytes; }
  size_t peak() const { return peak_; }

 private:
  size_t current_ = 0, peak_ = 0;
};

template <class T>
size_t bytes_of(const std::vector<T>& v) { return v.size() * sizeof(T); }

size_t matrix_bytes(const Matrix& m) { return size_t(m.rows) * size_t(m.cols) * dtype_size(m.dtype); }

}  // namespace

KVCache::KVCache(const TextConfig& config, int64_t batch) : batch_(batch), valid_(batch) {
  if (batch < 1) throw std::runtime_error("cache batch size must be >= 1");
  layers_.resize(config.num_hidden_layers);
  for (int64_t l = 0; l < config.num_hidden_layers; l++)
    layers_[l].ring = config.chunked[l] ? config.attention_chunk_size : 0;
}

std::vector<size_t> KVCache::layer_bytes() const {
  std::vector<size_t> out;
  for (const auto& l : layers_) out.push_back((l.k.size() + l.v.size()) * sizeof(float));
  return out;
}

size_t KVCache::bytes() const {
  size_t n = 0;
  for (const auto& l : layers_) n += (l.k.size() + l.v.size()) * sizeof(float);
  return n;
}

TextModel::TextModel(const std::string& dir, const std::string& dtype) {
  const std::string config_path = dir + "/config.json";
  const Json root = Json::parse(read_text_file(config_path), config_path);
  config_ = TextConfig::from_json(root, config_path);
  vision_config_ = VisionConfig::from_json(root, config_path);
  checkpoint_ = std::make_unique<Checkpoint>(dir);
  WeightLoader loader(*checkpoint_, config_, dtype);
  weights_ = loader.load();
  if (vision_config_.usable()) vision_ = std::make_unique<VisionModel>(vision_config_, loader.load_vision(vision_config_));
  owned_ = loader.take_owned();
  inv_freq_ = config_.rope_inv_freq();
}

size_t TextModel::mapped_weight_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : checkpoint_->tensors()) n += t.nbytes;
  return n;
}

size_t TextModel::converted_weight_bytes() const {
  return weights_.converted_bytes + (vision_ ? vision_->weights().converted_bytes : 0);
}

std::vector<WeightStat> TextModel::weight_stats() const {
  std::map<std::pair<std::string, std::string>, size_t> by;
  auto add = [&](const std::string& module, const Matrix& m) { by[{module, dtype_name(m.dtype)}] += matrix_bytes(m); };
  auto add_f32 = [&](const std::string& module, const std::vector<float>& v) { by[{module, "F32"}] += bytes_of(v); };
  const TextWeights& w = weights_;
  add("embed_tokens", w.embed_tokens);
  if (w.lm_head.data != w.embed_tokens.data) add("lm_head", w.lm_head);
  add_f32("norm", w.norm);
  for (const auto& l : w.layers) {
    add_f32("norm", l.input_layernorm);
    add_f32("norm", l.post_attention_layernorm);
    for (const Matrix* m : {&l.self_attn.q_proj, &l.self_attn.k_proj, &l.self_attn.v_proj, &l.self_attn.o_proj}) add("attention", *m);
    for (const auto* b : {&l.self_attn.q_bias, &l.self_attn.k_bias, &l.self_attn.v_bias, &l.self_attn.o_bias}) add_f32("attention", *b);
    if (l.is_moe) {
      add("router", l.moe.router);
      add("experts", l.moe.gate_up_proj);
      add("experts", l.moe.down_proj);
      for (const Matrix* m : {&l.moe.shared_expert.gate_proj, &l.moe.shared_expert.up_proj, &l.moe.shared_expert.down_proj})
        add("shared_expert", *m);
    } else {
      for (const Matrix* m : {&l.mlp.gate_proj, &l.mlp.up_proj, &l.mlp.down_proj}) add("mlp", *m);
    }
  }
  if (vision_) {
    const VisionWeights& v = vision_->weights();
    add("vision", v.patch_embedding);
    for (const auto* f : {&v.class_embedding, &v.positional_embedding, &v.layernorm_pre.weight, &v.layernorm_pre.bias,
                          &v.layernorm_post.weight, &v.layernorm_post.bias})
      add_f32("vision", *f);
    for (const auto& l : v.layers) {
      for (const Matrix* m : {&l.self_attn.q_proj, &l.self_attn.k_proj, &l.self_attn.v_proj, &l.self_attn.o_proj, &l.fc1, &l.fc2})
        add("vision", *m);
      for (const auto* f : {&l.self_attn.q_bias, &l.self_attn.k_bias, &l.self_attn.v_bias, &l.self_attn.o_bias, &l.fc1_bias,
                            &l.fc2_bias, &l.input_layernorm.weight, &l.input_layernorm.bias,
                            &l.post_attention_layernorm.weight, &l.post_attention_layernorm.bias})
        add_f32("vision", *f);
    }
    add("vision", v.adapter_fc1);
    add("vision", v.adapter_fc2);
    add("projector", v.projector);  // the module names of viz/estimate.ts
  } else {
    // A vision tower the engine cannot run (its config is inconsistent) is mapped but not used.
    for (const auto& [name, t] : checkpoint_->tensors())
      for (const char* module : {"vision_model.", "multi_modal_projector."})
        if (name.rfind(module, 0) == 0 || name.rfind(std::string("model.") + module, 0) == 0)
          by[{"vision (mapped, unused)", dtype_name(t.dtype)}] += t.nbytes;
  }
  std::vector<WeightStat> out;
  for (const auto& [key, bytes] : by) out.push_back({key.first, key.second, bytes});
  return out;
}

void TextModel::validate(const ForwardRequest& r) const {
  if (r.batch < 1 || r.seq_len < 1)
    throw std::runtime_error("empty input: input_ids needs at least one row of at least one token");
  // batch and seq_len come from JS unchecked: compare by division so huge values cannot overflow into a match.
  if (r.batch > int64_t(r.input_ids.size()) / r.seq_len || int64_t(r.input_ids.size()) != r.batch * r.seq_len)
    throw std::runtime_error("input_ids has " + std::to_string(r.input_ids.size()) + " values, expected batch x seq_len");
  for (int64_t i = 0; i < int64_t(r.input_ids.size()); i++) {
    int32_t id = r.input_ids[i];
    if (id < 0 || id >= config_.vocab_size)
      throw std::runtime_error("input_ids[" + std::to_string(i / r.seq_len) + "][" + std::to_string(i % r.seq_len) +
                               "] = " + std::to_string(id) + " is out of range: vocab_size is " +
                               std::to_string(config_.vocab_size));
  }
  const int64_t past = r.cache ? r.cache->length() : 0;
  if (r.cache && r.cache->batch() != r.batch)
    throw std::runtime_error("the cache holds " + std::to_string(r.cache->batch()) + " rows but input_ids has " +
                             std::to_string(r.batch));
  if (!r.attention_mask.empty()) {
    if (int64_t(r.attention_mask.size()) != r.batch * (past + r.seq_len))
      throw std::runtime_error("attention_mask must be [batch, past + seq_len] = [" + std::to_string(r.batch) + ", " +
                               std::to_string(past + r.seq_len) + "], got " +
                               std::to_string(r.attention_mask.size()) + " values");
    for (int32_t m : r.attention_mask)
      if (m != 0 && m != 1) throw std::runtime_error("attention_mask values must be 0 or 1, got " + std::to_string(m));
  }
  if (!r.position_ids.empty()) {
    if (int64_t(r.position_ids.size()) != r.batch * r.seq_len)
      throw std::runtime_error("position_ids must be [batch, seq_len] like input_ids");
    for (int32_t p : r.position_ids)
      if (p < 0) throw std::runtime_error("position_ids must be >= 0, got " + std::to_string(p));
  }
  if (r.logits_to_keep < 0) throw std::runtime_error("logits_to_keep must be >= 0");
  if (!r.image_features.empty()) {
    if (!vision_config_.present) throw std::runtime_error("image_features: " + vision_config_.problem);
    const int64_t H = config_.hidden_size;
    if (int64_t(r.image_features.size()) % H)
      throw std::runtime_error("image_features has " + std::to_string(r.image_features.size()) +
                               " values, not a whole number of rows of hidden_size " + std::to_string(H));
    const int64_t image_tokens = std::count(r.input_ids.begin(), r.input_ids.end(), int32_t(vision_config_.image_token_id));
    if (image_tokens != int64_t(r.image_features.size()) / H)
      throw std::runtime_error("Image features and image tokens do not match, tokens: " + std::to_string(image_tokens) +
                               ", features: " + std::to_string(r.image_features.size() / H) + " (image_token_id " +
                               std::to_string(vision_config_.image_token_id) + ")");
  }
  for (int32_t l : r.attention_layers)
    if (l < 0 || l >= config_.num_hidden_layers)
      throw std::runtime_error("output_attentions: layer " + std::to_string(l) + " does not exist (the model has " +
                               std::to_string(config_.num_hidden_layers) + " layers)");
  const int64_t E = config_.num_local_experts;
  if (!r.expert_override.empty()) {
    if (int64_t(r.expert_override.size()) != config_.num_hidden_layers * E)
      throw std::runtime_error("expert_mask: expected num_hidden_layers x num_local_experts entries");
    for (int64_t l = 0; l < config_.num_hidden_layers; l++) {
      int64_t forced = 0, disabled = 0;
      for (int64_t e = 0; e < E; e++) {
        int8_t o = r.expert_override[l * E + e];
        if (o != 0 && !config_.is_moe[l]) throw std::runtime_error("expert_mask: layer " + std::to_string(l) + " is not an MoE layer");
        forced += o > 0;
        disabled += o < 0;
      }
      if (forced > config_.num_experts_per_tok)
        throw std::runtime_error("expert_mask: layer " + std::to_string(l) + " forces " + std::to_string(forced) +
                                 " experts but each token uses num_experts_per_tok = " + std::to_string(config_.num_experts_per_tok));
      if (E - disabled < config_.num_experts_per_tok)
        throw std::runtime_error("expert_mask: layer " + std::to_string(l) + " disables so many experts that fewer than " +
                                 std::to_string(config_.num_experts_per_tok) + " remain");
    }
  }
}

ImageResult TextModel::encode_images(const ImageRequest& req, const std::atomic<bool>& cancel) {
  if (!vision_) throw std::runtime_error("cannot encode images: " + vision_config_.problem);
  return vision_->encode(req, cancel);
}

ForwardResult TextModel::forward(const ForwardRequest& req, const std::atomic<bool>& cancel) {
  std::lock_guard<std::mutex> lock(busy_);
  validate(req);
  const TextConfig& c = config_;
  const int64_t H = c.hidden_size, nH = c.num_attention_heads, kvH = c.num_key_value_heads, D = c.head_dim;
  const int64_t E = c.num_local_experts, I = c.intermediate_size, L = c.num_hidden_layers;

  Step s;
  s.B = req.batch;
  s.T = req.seq_len;
  s.P = req.cache ? req.cache->length() : 0;
  s.N = s.B * s.T;
  s.valid.resize(s.B);
  s.left_padding.assign(s.B, 0);
  for (int64_t b = 0; b < s.B; b++) {
    auto& v = s.valid[b];
    if (req.cache) v = req.cache->valid_[b];
    if (req.attention_mask.empty()) {
      v.resize(s.P + s.T, 1);
    } else {
      v.resize(s.P + s.T);
      for (int64_t k = 0; k < s.P + s.T; k++) v[k] = uint8_t(req.attention_mask[b * (s.P + s.T) + k]);
    }
    while (s.left_padding[b] < s.P + s.T && !v[s.left_padding[b]]) s.left_padding[b]++;
  }
  s.positions.resize(s.N);
  for (int64_t n = 0; n < s.N; n++)
    s.positions[n] = req.position_ids.empty() ? int32_t(s.P + n % s.T) : req.position_ids[n];

  ForwardResult result;
  ScratchMeter meter;
  const bool keep_hidden = req.output_hidden_states;
  const int64_t K = c.num_experts_per_tok;
  std::vector<int64_t> attention_slot(L, -1);  // layer -> index in result.attentions
  for (size_t i = 0; i < req.attention_layers.size(); i++) attention_slot[req.attention_layers[i]] = int64_t(i);
  const int64_t attention_block = s.B * nH * s.T * (s.P + s.T);
  result.attentions.assign(req.attention_layers.size() * attention_block, 0.0f);
  if (keep_hidden) result.hidden_states.reserve(size_t(L + 1) * s.N * H);

  // Embeddings; image features take the place of the image tokens' ones, in order (masked_scatter).
  std::vector<float> x(s.N * H);
  const float* next_image_row = req.image_features.empty() ? nullptr : req.image_features.data();
  for (int64_t n = 0; n < s.N; n++) {
    if (next_image_row && req.input_ids[n] == vision_config_.image_token_id) {
      std::memcpy(x.data() + n * H, next_image_row, sizeof(float) * H);
      next_image_row += H;
    } else {
      row_to_f32(weights_.embed_tokens, req.input_ids[n], x.data() + n * H);
    }
  }
  if (keep_hidden) result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());

  std::vector<float> h(s.N * H), branch(s.N * H);
  std::vector<float> q(s.N * nH * D), attn(s.N * nH * D);
  std::vector<std::vector<float>> new_k(L), new_v(L);  // committed to the cache after the last layer
  for (const auto* buf : {&x, &h, &branch, &q, &attn, &result.attentions}) meter.hold(bytes_of(*buf));

  for (int64_t layer = 0; layer < L; layer++) {
    if (cancel.load()) throw CancelledError();
    const DecoderLayerWeights& lw = weights_.layers[layer];
    const AttentionWeights& aw = lw.self_attn;
    const bool use_rope = c.use_rope[layer];
    KVCache::Layer* cached = req.cache ? &req.cache->layers_[layer] : nullptr;

    // --- Llama4TextAttention ---
    rms_norm(x.data(), lw.input_layernorm.data(), h.data(), s.N, H, float(c.rms_norm_eps));
    std::vector<float>& k = new_k[layer];
    std::vector<float>& v = new_v[layer];
    k.resize(s.N * kvH * D);
    v.resize(s.N * kvH * D);
    meter.hold(bytes_of(k) + bytes_of(v));
    // per-thread attention scores
    meter.hold(size_t(std::min<int64_t>(num_threads(), s.B * nH * s.T)) * size_t(s.P + s.T) * sizeof(float));
    linear(h.data(), s.N, aw.q_proj, nullptr, q.data());
    linear(h.data(), s.N, aw.k_proj, nullptr, k.data());
    linear(h.data(), s.N, aw.v_proj, nullptr, v.data());
    add_bias(q.data(), aw.q_bias, s.N);
    add_bias(k.data(), aw.k_bias, s.N);
    add_bias(v.data(), aw.v_bias, s.N);
    if (use_rope) {
      apply_rope(q.data(), s.N, nH, D, s.positions, inv_freq_);
      apply_rope(k.data(), s.N, kvH, D, s.positions, inv_freq_);
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
    pool()->parallel_for(s.B * nH * s.T, [&](int64_t begin, int64_t end) {
      std::vector<float> scores;
      for (int64_t item = begin; item < end; item++) {
        const int64_t b = item / (nH * s.T), head = (item / s.T) % nH, t = item % s.T;
        const int64_t qpos = s.P + t, kvh = head / group;
        const float* qv = q.data() + ((b * s.T + t) * nH + head) * D;
        float* out = attn.data() + ((b * s.T + t) * nH + head) * D;
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
        std::fill(out, out + D, 0.0f);
        if (best == -std::numeric_limits<float>::infinity()) continue;  // a padding query: nothing to attend to
        float sum = 0;
        for (auto& sc : scores) sum += (sc = std::exp(sc - best));
        const float inv_sum = 1.0f / sum;
        float* probs_out = attention_slot[layer] < 0 ? nullptr
            : result.attentions.data() + attention_slot[layer] * attention_block + ((b * nH + head) * s.T + t) * (s.P + s.T);
        for (int64_t pos = lo; pos <= qpos; pos++) {
          const float p = scores[pos - lo] * inv_sum;
          if (probs_out) probs_out[pos] = p;
          if (p == 0) continue;
          const float* vr = key_row(v, cached ? &cached->v : nullptr, b, kvh, pos);
          for (int64_t i = 0; i < D; i++) out[i] += p * vr[i];
        }
      }
    }, std::max<int64_t>(1, 16384 / (D * (s.P + s.T))));  // small attention is not worth waking threads for
    meter.release(size_t(std::min<int64_t>(num_threads(), s.B * nH * s.T)) * size_t(s.P + s.T) * sizeof(float));
    linear(attn.data(), s.N, aw.o_proj, nullptr, branch.data());
    add_bias(branch.data(), aw.o_bias, s.N);
    for (int64_t i = 0; i < s.N * H; i++) x[i] += branch[i];

    // --- feed forward: Llama4TextMLP or Llama4TextMoe ---
    rms_norm(x.data(), lw.post_attention_layernorm.data(), h.data(), s.N, H, float(c.rms_norm_eps));
    if (!lw.is_moe) {
      meter.hold(2 * sizeof(float) * s.N * lw.mlp.gate_proj.rows);
      mlp(lw.mlp, h.data(), s.N, branch.data());
      meter.release(2 * sizeof(float) * s.N * lw.mlp.gate_proj.rows);
    } else {
      const MoeWeights& mw = lw.moe;
      // Llama4Router: logits -> top-k -> sigmoid of the chosen logits (the others weigh 0).
      std::vector<float> router_logits(s.N * E);
      linear(h.data(), s.N, mw.router, nullptr, router_logits.data());
      if (req.output_router_logits) {
        result.router_logits.insert(result.router_logits.end(), router_logits.begin(), router_logits.end());
        result.moe_layers.push_back(int32_t(layer));
      }
      std::vector<std::vector<std::pair<int64_t, float>>> routed_to(E);  // expert -> (token, score)
      const int8_t* override = req.expert_override.empty() ? nullptr : req.expert_override.data() + layer * E;
      std::vector<int64_t> order(E);
      std::vector<float> rank(E);
      for (int64_t n = 0; n < s.N; n++) {
        const float* lg = router_logits.data() + n * E;
        // Interventions: forced experts rank first, disabled ones last; the rest by logit.
        for (int64_t e = 0; e < E; e++)
          rank[e] = !override || override[e] == 0 ? lg[e] : override[e] > 0 ? INFINITY : -INFINITY;
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + K, order.end(),
                          [&](int64_t a, int64_t b) { return rank[a] > rank[b] || (rank[a] == rank[b] && a < b); });
        for (int64_t j = 0; j < K; j++) {
          const int64_t e = order[j];
          const float score = 1.0f / (1.0f + std::exp(-lg[e]));
          routed_to[e].push_back({n, score});
          if (req.output_router_logits) {
            result.router_experts.push_back(int32_t(e));
            result.router_scores.push_back(score);
          }
        }
      }
      std::vector<float> routed(s.N * H, 0.0f);
      meter.hold(bytes_of(router_logits) + bytes_of(routed));
      // Llama4TextExperts: each expert sees its tokens pre-scaled by their router score, and its
      // weights are read once for all of them.
      for (int64_t e = 0; e < E; e++) {
        const auto& tokens = routed_to[e];
        if (tokens.empty()) continue;
        const int64_t n_e = int64_t(tokens.size());
        std::vector<float> xin(n_e * H), gate_up(n_e * 2 * I), act(n_e * I), eout(n_e * H);
        const size_t expert_bytes = bytes_of(xin) + bytes_of(gate_up) + bytes_of(act) + bytes_of(eout);
        meter.hold(expert_bytes);
        for (int64_t j = 0; j < n_e; j++)
          for (int64_t i = 0; i < H; i++) xin[j * H + i] = h[tokens[j].first * H + i] * tokens[j].second;
        matmul_in_out(xin.data(), n_e, mw.gate_up_proj.slice_rows(e * H, H), gate_up.data());
        for (int64_t j = 0; j < n_e; j++)
          for (int64_t i = 0; i < I; i++)
            act[j * I + i] = gate_up[j * 2 * I + I + i] * silu(gate_up[j * 2 * I + i]);
        matmul_in_out(act.data(), n_e, mw.down_proj.slice_rows(e * I, I), eout.data());
        for (int64_t j = 0; j < n_e; j++)
          for (int64_t i = 0; i < H; i++) routed[tokens[j].first * H + i] += eout[j * H + i];
        meter.release(expert_bytes);
      }
      meter.hold(2 * sizeof(float) * s.N * I);
      mlp(mw.shared_expert, h.data(), s.N, branch.data());
      meter.release(2 * sizeof(float) * s.N * I);
      for (int64_t i = 0; i < s.N * H; i++) branch[i] += routed[i];
      meter.release(bytes_of(router_logits) + bytes_of(routed));
    }
    for (int64_t i = 0; i < s.N * H; i++) x[i] += branch[i];
    if (keep_hidden && layer < L - 1) result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());
  }

  // Final norm (the last hidden state reported is the normed one, as transformers reports it) and lm_head.
  rms_norm(x.data(), weights_.norm.data(), h.data(), s.N, H, float(c.rms_norm_eps));
  if (keep_hidden) result.hidden_states.insert(result.hidden_states.end(), h.begin(), h.end());
  result.kept = req.logits_to_keep > 0 ? std::min(req.logits_to_keep, s.T) : s.T;
  std::vector<float> last(s.B * result.kept * H);
  for (int64_t b = 0; b < s.B; b++)
    std::memcpy(last.data() + b * result.kept * H, h.data() + (b * s.T + s.T - result.kept) * H,
                sizeof(float) * result.kept * H);
  result.logits.resize(s.B * result.kept * c.vocab_size);
  meter.hold(bytes_of(last) + bytes_of(result.logits) + bytes_of(result.hidden_states) + bytes_of(result.router_logits));
  result.scratch_peak_bytes = meter.peak();
  linear(last.data(), s.B * result.kept, weights_.lm_head, nullptr, result.logits.data());
  if (cancel.load()) throw CancelledError();

  // Commit the new keys/values: nothing above touched the cache, so a failed or cancelled call leaves it intact.
  if (req.cache) {
    KVCache& cache = *req.cache;
    const int64_t row = kvH * D, total = s.P + s.T;
    for (int64_t layer = 0; layer < L; layer++) {
      KVCache::Layer& cl = cache.layers_[layer];
      const int64_t slots = cl.ring ? cl.ring : total;
      if (int64_t(cl.k.size()) < slots * s.B * row) {
        cl.k.resize(slots * s.B * row);
        cl.v.resize(slots * s.B * row);
      }
      for (int64_t t = 0; t < s.T; t++) {
        const int64_t pos = s.P + t;
        if (cl.ring && pos < total - cl.ring) continue;  // would be overwritten within this call
        const int64_t slot = cl.ring ? pos % cl.ring : pos;
        for (int64_t b = 0; b < s.B; b++) {
          std::memcpy(cl.k.data() + (slot * s.B + b) * row, new_k[layer].data() + (b * s.T + t) * row, sizeof(float) * row);
          std::memcpy(cl.v.data() + (slot * s.B + b) * row, new_v[layer].data() + (b * s.T + t) * row, sizeof(float) * row);
        }
      }
    }
    cache.valid_ = std::move(s.valid);
    cache.length_ = total;
  }
  return result;
}

}  // namespace l4
