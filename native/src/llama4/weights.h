// Weights of the Llama 4 text model as views into the mapped checkpoint (converted copies only
// when the caller asks for another dtype). Names follow transformers' modules.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../kernels.h"
#include "../safetensors.h"
#include "config.h"

namespace l4 {

struct AttentionWeights {
  Matrix q_proj, k_proj, v_proj, o_proj;
  std::vector<float> q_bias, k_bias, v_bias, o_bias;  // empty unless attention_bias
};

struct MlpWeights {  // Llama4TextMLP: down(silu(gate(x)) * up(x))
  Matrix gate_proj, up_proj, down_proj;
};

struct MoeWeights {  // Llama4TextMoe
  Matrix router;        // [E, H]
  Matrix gate_up_proj;  // [E*H, 2I]: expert e is rows [e*H, (e+1)*H)
  Matrix down_proj;     // [E*I, H]:  expert e is rows [e*I, (e+1)*I)
  MlpWeights shared_expert;
};

struct DecoderLayerWeights {
  std::vector<float> input_layernorm, post_attention_layernorm;
  AttentionWeights self_attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct TextWeights {
  Matrix embed_tokens;  // [V, H]
  std::vector<DecoderLayerWeights> layers;
  std::vector<float> norm;
  Matrix lm_head;  // [V, H]
  std::string layout;  // "Llama4ForCausalLM" or "Llama4ForConditionalGeneration"
  size_t converted_bytes = 0;  // bytes held in converted copies (0 when used in place)
};

// `dtype`: "auto" / "float32" keep the checkpoint's dtype (f32 math on widened values);
// "bfloat16" / "float16" convert floating weights to that dtype once at load.
class WeightLoader {
 public:
  WeightLoader(const Checkpoint& ckpt, const TextConfig& config, const std::string& dtype);
  TextWeights load();

 private:
  Matrix matrix(const std::string& name, std::vector<int64_t> shape);
  std::vector<float> vector_f32(const std::string& name, int64_t size);
  const TensorInfo& tensor(const std::string& name, const std::vector<int64_t>& shape);

  const Checkpoint& ckpt_;
  const TextConfig& config_;
  std::string dtype_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;
  size_t converted_bytes_ = 0;

 public:
  std::vector<std::unique_ptr<std::vector<uint8_t>>> take_owned() { return std::move(owned_); }
};

}  // namespace l4
