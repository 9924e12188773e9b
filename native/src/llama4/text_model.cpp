// Llama 4 text forward pass, read top to bottom like transformers' modeling_llama4.py:
// embed -> [RMSNorm -> Attention -> residual -> RMSNorm -> MLP or MoE -> residual] x L -> norm -> lm_head.
#include "text_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace l4 {

namespace {



// Batch shapes, padding and RoPE positions of one call (the cache's past positions included).
Step make_step(const ForwardRequest& req) {
  Step s;
  s.B = req.batch;
  s.T = req.seq_len;
  s.P = req.cache ? req.cache->length() : 0;
  s.N = s.B * s.T;
  s.eager_attention = req.eager_attention;
  s.valid.resize(s.B);
  s.left_padding.assign(s.B, 0);
  for (int64_t b = 0; b < s.B; b++) {
    auto& v = s.valid[b];
    if (req.cache) v = req.cache->valid(b);
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
  return s;
}

}  // namespace

DType kv_cache_dtype(const std::string& name) {
  if (name == "float32") return DType::F32;
  if (name == "bfloat16") return DType::BF16;
  if (name == "int8") return DType::I8;
  throw std::runtime_error("kv_cache_dtype \"" + name + "\" is not supported (float32, bfloat16, int8)");
}

KVCache::KVCache(const TextConfig& config, int64_t batch, DType dtype)
    : batch_(batch), head_dim_(config.head_dim), row_(config.num_key_value_heads * config.head_dim), dtype_(dtype), valid_(batch) {
  if (batch < 1) throw std::runtime_error("cache batch size must be >= 1");
  layers_.resize(config.num_hidden_layers);
  for (int64_t l = 0; l < config.num_hidden_layers; l++) {
    layers_[l].ring = config.chunked[l] ? config.attention_chunk_size : 0;
    layers_[l].dtype = dtype;
  }
}

void KVCache::append(std::vector<std::vector<uint8_t>> valid, int64_t new_tokens, const std::vector<LayerKV>& fresh) {
  const int64_t P = length_, total = P + new_tokens, D = head_dim_, heads = row_ / D;
  for (size_t layer = 0; layer < layers_.size(); layer++) {
    KVLayer& cl = layers_[layer];
    const LayerKV& in = fresh[layer];
    // A ring fills up to its size as the sequence grows; pages are added at the end, the old ones stay put.
    cl.slots = cl.ring ? std::min(cl.ring, total) : total;
    const size_t pages = size_t((cl.slots + KVLayer::kPageSlots - 1) / KVLayer::kPageSlots);
    const size_t rows = size_t(KVLayer::kPageSlots * batch_ * heads), element = dtype_size(cl.dtype);
    while (cl.pages.size() < pages) {
      KVLayer::Page page;
      page.k.resize(rows * D * element);
      page.v.resize(rows * D * element);
      if (cl.dtype == DType::I8) {
        page.k_scales.resize(rows);
        page.v_scales.resize(rows);
      }
      cl.pages.push_back(std::move(page));
    }
    for (int64_t t = 0; t < new_tokens; t++) {
      const int64_t pos = P + t;
      if (cl.ring && pos < total - cl.ring) continue;  // would be overwritten within this call
      const int64_t slot = cl.ring ? pos % cl.ring : pos;
      KVLayer::Page& page = cl.pages[size_t(slot / KVLayer::kPageSlots)];
      for (int64_t b = 0; b < batch_; b++)
        for (int64_t h = 0; h < heads; h++) {
          const int64_t row = KVLayer::row_in_page(slot, b, h, heads), to = row * D;
          const int64_t from = ((b * new_tokens + t) * heads + h) * D;
          // The values were rounded to the cache's dtype when computed (round_to_cache), so storing them is exact.
          if (cl.dtype == DType::F32) {
            std::memcpy(page.k.data() + to * element, in.k.data() + from, sizeof(float) * D);
            std::memcpy(page.v.data() + to * element, in.v.data() + from, sizeof(float) * D);
          } else if (cl.dtype == DType::BF16) {
            auto* k = reinterpret_cast<uint16_t*>(page.k.data()) + to;
            auto* v = reinterpret_cast<uint16_t*>(page.v.data()) + to;
            for (int64_t i = 0; i < D; i++) {
              k[i] = f32_to_bf16(in.k[from + i]);
              v[i] = f32_to_bf16(in.v[from + i]);
            }
          } else {  // I8: the codes and scales round_to_cache made
            std::memcpy(page.k.data() + to, in.k_codes.data() + from, D);
            std::memcpy(page.v.data() + to, in.v_codes.data() + from, D);
            page.k_scales[row] = in.k_scales[from / D];
            page.v_scales[row] = in.v_scales[from / D];
          }
        }
    }
  }
  valid_ = std::move(valid);
  length_ = total;
}

std::vector<size_t> KVCache::layer_bytes() const {
  std::vector<size_t> out;
  // Positions held (the last page's unused slots, at most kPageSlots - 1, are not counted).
  for (const auto& l : layers_) {
    const size_t elements = size_t(2 * l.slots * batch_ * row_);
    out.push_back(elements * dtype_size(l.dtype) + (l.dtype == DType::I8 ? elements / head_dim_ * sizeof(float) : 0));
  }
  return out;
}

size_t KVCache::bytes() const {
  size_t n = 0;
  for (size_t b : layer_bytes()) n += b;
  return n;
}

TextModel::TextModel(const std::string& dir, LoadOptions options) {
  kv_dtype_ = kv_cache_dtype(options.kv_dtype);
  const std::string config_path = dir + "/config.json";
  const Json root = Json::parse(read_text_file(config_path), config_path);
  config_ = TextConfig::from_json(root, config_path);
  vision_config_ = VisionConfig::from_json(root, config_path);
  QuantizationConfig quant = QuantizationConfig::from_checkpoint(root, config_path);
  if (!options.fbgemm_fp8.empty()) {
    if (quant.method != QuantizationConfig::Method::None)
      throw std::runtime_error("FbgemmFp8Config quantizes a float checkpoint at load, but " + dir +
                               " is already quantized (config.json has a quantization_config)");
    quant = QuantizationConfig::fbgemm_fp8(Json::parse(options.fbgemm_fp8, "FbgemmFp8Config"));
  }
  checkpoint_ = std::make_unique<Checkpoint>(dir);
  WeightLoader loader(*checkpoint_, config_, options.dtype, quant, options.use_mmap);
  loader.layer_loaded = std::move(options.layer_loaded);
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
  auto add = [&](const std::string& module, const Matrix& m) { by[{module, dtype_name(m.dtype)}] += m.bytes(); };
  auto add_f32 = [&](const std::string& module, const std::vector<float>& v) {
    if (!v.empty()) by[{module, "F32"}] += bytes_of(v);  // absent biases are not entries
  };
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
      for (const std::vector<Matrix>* experts : {&l.moe.gate_proj, &l.moe.up_proj, &l.moe.down_proj})
        for (const Matrix& m : *experts) add("experts", m);
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
  const int64_t H = c.hidden_size, nH = c.num_attention_heads, E = c.num_local_experts, L = c.num_hidden_layers;

  Step s = make_step(req);
  s.cancel = &cancel;
  s.kv_dtype = req.cache ? req.cache->dtype() : kv_dtype_;  // a forward without a cache rounds as the model's caches do

  ForwardResult result;
  ScratchMeter meter;
  const bool keep_hidden = req.output_hidden_states;
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
  // Each row's page fault also maps its cached neighbours (fault-around, up to 64 KiB), so a 512-token prompt left
  // 21 MB of a 32 MB table in the process. The file's page cache keeps the pages; the process holds none.
  if (weights_.embed_tokens_looked_up_in_place) Checkpoint::release(weights_.embed_tokens.data, weights_.embed_tokens.bytes());
  if (keep_hidden) result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());

  std::vector<float> h(s.N * H), branch(s.N * H);
  std::vector<LayerKV> fresh(L);  // committed to the cache after the last layer
  for (const auto* buf : {&x, &h, &branch, &result.attentions}) meter.hold(bytes_of(*buf));
  RouterRecord router;

  for (int64_t layer = 0; layer < L; layer++) {
    if (cancel.load()) throw CancelledError();
    const DecoderLayerWeights& lw = weights_.layers[layer];
    const KVLayer* cached = req.cache ? &req.cache->layers_[layer] : nullptr;
    float* probs = attention_slot[layer] < 0 ? nullptr : result.attentions.data() + attention_slot[layer] * attention_block;

    rms_norm(x.data(), lw.input_layernorm.data(), h.data(), s.N, H, float(c.rms_norm_eps));
    attention(c, layer, lw.self_attn, s, cached, inv_freq_, h.data(), fresh[layer], probs, workspace_, meter, branch.data());
    meter.hold(fresh[layer].bytes());
    add_in_place(x.data(), branch.data(), s.N * H);

    rms_norm(x.data(), lw.post_attention_layernorm.data(), h.data(), s.N, H, float(c.rms_norm_eps));
    if (lw.is_moe) {
      const int8_t* override = req.expert_override.empty() ? nullptr : req.expert_override.data() + layer * E;
      moe(c, lw.moe, h.data(), s.N, override, req.output_router_logits ? &router : nullptr, workspace_, meter,
          branch.data());
      if (req.output_router_logits) result.moe_layers.push_back(int32_t(layer));
    } else {
      mlp(lw.mlp, h.data(), s.N, workspace_, meter, branch.data());
    }
    add_in_place(x.data(), branch.data(), s.N * H);
    if (keep_hidden && layer < L - 1) result.hidden_states.insert(result.hidden_states.end(), x.begin(), x.end());
  }
  result.router_logits = std::move(router.logits);
  result.router_experts = std::move(router.experts);
  result.router_scores = std::move(router.scores);

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
  workspace_.trim(64 << 20);  // a long prompt's buffers are not kept for the decode steps after it
  if (cancel.load()) throw CancelledError();

  // Commit the new keys/values: nothing above touched the cache, so a failed or cancelled call leaves it intact.
  if (req.cache) req.cache->append(std::move(s.valid), s.T, fresh);
  return result;
}

}  // namespace l4
