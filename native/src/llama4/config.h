// Llama4TextConfig as transformers reads it from config.json, with the same defaults and the
// same derived per-layer lists (no_rope_layers, moe_layers, layer_types); Llama4VisionConfig likewise.
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

// Llama4VisionConfig (with transformers' defaults) and the image token id of the outer Llama4Config.
// A config the vision tower cannot run with does not stop the text model from loading: `problem`
// says why, naming the config.json keys, and encoding images fails with it.
struct VisionConfig {
  bool present = false;          // config.json is a Llama4Config with a vision_config
  int64_t image_token_id = 200092;  // Llama4Config.image_token_index: <|patch|>, one per image feature row
  int64_t hidden_size = 768, num_hidden_layers = 34, num_attention_heads = 16, num_channels = 3;
  int64_t intermediate_size = 5632, image_size = 448, patch_size = 14;
  int64_t vision_output_dim = 7680, projector_input_dim = 4096, projector_output_dim = 4096;
  double pixel_shuffle_ratio = 0.5;
  double rope_theta = 10000.0;
  // Derived, valid when usable().
  int64_t head_dim = 0;
  int64_t patches_per_side = 0;  // image_size / patch_size
  int64_t shuffled_side = 0;     // patches_per_side * pixel_shuffle_ratio
  int64_t tokens_per_tile = 0;   // shuffled_side^2 image tokens per tile
  std::string problem;           // empty when the vision tower can run

  bool usable() const { return problem.empty(); }
  static VisionConfig from_json(const Json& root, const std::string& where);
  // Llama4VisionRotaryEmbedding's angles, [patches + 1][head_dim / 2]: the first half of each row
  // turns with the patch column, the second with its row; the class token (last) does not turn.
  std::vector<float> rope_angles() const;
};

}  // namespace l4
