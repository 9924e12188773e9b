// Llama4TextConfig as transformers reads it from config.json, with the same defaults and the
// same derived per-layer lists (no_rope_layers, moe_layers, layer_types).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../json.h"

namespace l4 {

struct RopeConfig {
  std::string type = "default";  // "default" or "llama3"
  double theta = 500000.0;
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct TextConfig {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, intermediate_size_mlp = 16384;
  int64_t num_hidden_layers = 0, num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t num_local_experts = 16, num_experts_per_tok = 1;
  double rms_norm_eps = 1e-5;
  bool use_qk_norm = true, attention_bias = false, tie_word_embeddings = false;
  int64_t attention_chunk_size = 8192;  // 0: no chunked layers
  bool attn_temperature_tuning = true;
  double floor_scale = 8192, attn_scale = 0.1;
  RopeConfig rope;
  // Derived per layer, as Llama4TextConfig.__post_init__ does.
  std::vector<bool> use_rope;  // no_rope_layers: true = RoPE layer, false = NoPE layer
  std::vector<bool> is_moe;    // from moe_layers / interleave_moe_layer_step
  std::vector<bool> chunked;   // layer_types == "chunked_attention"
  bool multimodal_layout = false;  // config.json was a Llama4Config with a text_config

  // Reads config.json (Llama4Config or Llama4TextConfig). `where` names the file in errors.
  static TextConfig from_json(const Json& root, const std::string& where);
  // Inverse RoPE frequencies (head_dim / 2 of them), computed in f32 as transformers does.
  std::vector<float> rope_inv_freq() const;
  std::string to_json() const;  // the derived config, for the SDK
};

}  // namespace l4
