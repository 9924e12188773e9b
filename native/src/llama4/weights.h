// Weights of the Llama 4 text model and vision tower as views into the mapped checkpoint (converted
// copies only when the caller asks for another dtype). Names follow transformers' modules.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../kernels/kernels.h"
#include "../safetensors.h"
#include "config.h"
#include "quantization_config.h"

namespace l4 {

struct AttentionWeights {
  Matrix q_proj, k_proj, v_proj, o_proj;
  std::vector<float> q_bias, k_bias, v_bias, o_bias;  // empty unless attention_bias
};

struct MlpWeights {  // Llama4TextMLP: down(silu(gate(x)) * up(x))
  Matrix gate_proj, up_proj, down_proj;
};

struct MoeWeights {  // Llama4TextMoe
  Matrix router;  // [E, H]
  // Llama4TextExperts, one Llama4TextMLP per expert as transformers splits them under quantization: gate_proj[e]
  // and up_proj[e] map H inputs to I outputs, down_proj[e] I to H. Float views of the fused [E, H, 2I] / [E, I, H]
  // tensors are slices of them (in_out; gate and up are the two halves of each row); quantized experts are
  // [out, in] matrices.
  std::vector<Matrix> gate_proj, up_proj, down_proj;
  MlpWeights shared_expert;
};

struct DecoderLayerWeights {
  std::vector<float> input_layernorm, post_attention_layernorm;
  AttentionWeights self_attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

// A Linear the engine holds quantized (at load, or as a quantized checkpoint stored it), by its module name, and
// the checkpoint tensors it stands for: what save_pretrained writes in their place.
struct QuantizedModule {
  std::string module;  // e.g. "model.layers.0.feed_forward.experts.3.gate_proj"
  Matrix weight;       // [out, in]: Q8 / Q4 / F8_E4M3
  std::vector<std::string> replaces;
};

struct TextWeights {
  Matrix embed_tokens;  // [V, H]
  // The table is read in place from the mapped checkpoint, a row per token, and nothing else reads it (no tied
  // lm_head): the forward drops its pages from the process after the lookup (see TextModel::forward).
  bool embed_tokens_looked_up_in_place = false;
  std::vector<DecoderLayerWeights> layers;
  std::vector<float> norm;
  Matrix lm_head;  // [V, H]
  std::string layout;  // "Llama4ForCausalLM" or "Llama4ForConditionalGeneration"
  size_t converted_bytes = 0;  // bytes held in converted copies (0 when used in place)
  std::vector<QuantizedModule> quantized;
};

struct LayerNormWeights {  // nn.LayerNorm
  std::vector<float> weight, bias;
};

struct VisionEncoderLayerWeights {  // Llama4VisionEncoderLayer
  LayerNormWeights input_layernorm, post_attention_layernorm;
  AttentionWeights self_attn;  // every projection has a bias
  Matrix fc1, fc2;             // Llama4VisionMLP
  std::vector<float> fc1_bias, fc2_bias;
};

struct VisionWeights {  // Llama4VisionModel + Llama4MultiModalProjector
  Matrix patch_embedding;                   // Llama4UnfoldConvolution.linear [hidden, channels * patch^2]
  std::vector<float> class_embedding;       // [hidden]
  std::vector<float> positional_embedding;  // positional_embedding_vlm [patches + 1, hidden]
  LayerNormWeights layernorm_pre, layernorm_post;
  std::vector<VisionEncoderLayerWeights> layers;
  Matrix adapter_fc1, adapter_fc2;  // vision_adapter.mlp (Llama4VisionMLP2, no bias)
  Matrix projector;                 // multi_modal_projector.linear_1 [text hidden, vision_output_dim]
  size_t converted_bytes = 0;
};

// `dtype`: "auto" / "float32" keep the checkpoint's dtype (f32 math on widened values);
// "bfloat16" / "float16" convert floating weights to that dtype once at load; "q8" / "q4" quantize the text
// model's linear layers (attention, MLPs, experts; an untied lm_head to q8) block-wise at load, keeping the router,
// embeddings (and a lm_head tied to them), norms and vision tower as they are (see quantized.h).
// `quant`: a compressed-tensors checkpoint's scheme (its quantized Linears are used as stored: FP8 in place,
// int4 / int8 repacked into Q4 / Q8), or FbgemmFp8Config (Linears and experts quantized to FP8 at load).
class WeightLoader {
 public:
  // `use_mmap`: float weights used as stored stay in the mapped checkpoint (pages the OS can drop and read again)
  // instead of being copied into the engine's huge-page memory (see resident()).
  WeightLoader(const Checkpoint& ckpt, const TextConfig& config, const std::string& dtype, QuantizationConfig quant,
               bool use_mmap = false);
  TextWeights load();
  // Called after each decoder layer with the bytes of the text model's checkpoint tensors loaded so far and in all
  // (a layer quantized at load can take seconds: this drives a progress bar).
  std::function<void(size_t done, size_t total)> layer_loaded;
  // The vision tower of a Llama4ForConditionalGeneration checkpoint; `vision` must be usable().
  VisionWeights load_vision(const VisionConfig& vision);

 private:
  Matrix matrix(const std::string& name, std::vector<int64_t> shape);
  // The Linear layer `module` ([out, in]): a compressed-tensors quantized one as stored, else its float weight,
  // quantized at load when dtype or FbgemmFp8Config asks for it.
  Matrix linear(const std::string& module, int64_t out, int64_t in, bool lm_head = false);
  // `replaces`: the checkpoint tensors the result stands for (recorded when it is quantized).
  Matrix quantized_at_load(const std::string& module, const Matrix& m, bool lm_head, std::vector<std::string> replaces);
  bool quantizes_at_load(const std::string& module) const;
  // A weight the products stream every token, still in the mapped checkpoint (`tensor`'s data): copied into
  // WeightBytes (huge pages: decode of the MoE bench model measured 5-12% faster than from the file's pages), a
  // piece at a time with the mapped pages released behind it, so loading holds at most one piece twice. Unchanged
  // when use_mmap, when the weight is already a copy, or when it is too small for a huge page.
  Matrix resident(const std::string& tensor, Matrix m);
  // A copy of the float [in, out] view `m` in nn.Linear layout ([out, in], contiguous), in WeightBytes.
  Matrix linear_layout(const Matrix& m);
  Matrix packed(const std::string& module, int64_t out, int64_t in);  // compressed-tensors int4 / int8
  Matrix fp8(const std::string& module, int64_t out, int64_t in);     // compressed-tensors FP8
  // Llama4TextExperts under `module` (…feed_forward.experts): the fused tensors or one Linear per expert.
  void experts(const std::string& module, MoeWeights& moe);
  void check_ignore_list() const;
  Matrix quantized(const Matrix& m, DType target);
  WeightBytes& own(size_t bytes);
  std::vector<float> vector_f32(const std::string& name, int64_t size);
  std::vector<float> tensor_f32(const std::string& name, const std::vector<int64_t>& shape);
  LayerNormWeights layer_norm(const std::string& prefix, int64_t size);
  const TensorInfo& tensor(const std::string& name, const std::vector<int64_t>& shape);

  const Checkpoint& ckpt_;
  const TextConfig& config_;
  std::string dtype_;
  QuantizationConfig quant_;
  bool use_mmap_;
  std::vector<QuantizedModule> quantized_modules_;
  std::vector<std::unique_ptr<WeightBytes>> owned_;
  size_t converted_bytes_ = 0;

 public:
  std::vector<std::unique_ptr<WeightBytes>> take_owned() { return std::move(owned_); }
};

}  // namespace l4
