// How a checkpoint's weights are quantized, or are to be quantized at load: config.json's
// quantization_config (compressed-tensors, as llm-compressor and Meta's FP8 releases write it), or
// transformers' FbgemmFp8Config passed to from_pretrained. Validated here, so an unsupported scheme fails
// at load with the key that asks for it.
#pragma once
#include <string>
#include <vector>

#include "../json.h"

namespace l4 {

struct QuantizationConfig {
  enum class Method { None, CompressedTensors, FbgemmFp8 };
  Method method = Method::None;
  // compressed-tensors: the weights' storage is read from the tensors themselves (weight_packed / F8_E4M3 with
  // weight_scale); the config says what the activations do. FP8 checkpoints quantize a quantized Linear's input
  // per token on the fly when input_activations is dynamic; int checkpoints (W4A16 / W8A16) leave activations
  // to the kernels.
  bool fp8_dynamic_activations = false;
  std::vector<std::string> ignore;  // module names, or "re:<regex>"
  // FbgemmFp8Config
  double activation_scale_ub = 1200.0;
  std::vector<std::string> modules_to_not_convert;

  // config.json's quantization_config (null: none). `where` names the file in errors.
  static QuantizationConfig from_checkpoint(const Json& root, const std::string& where);
  // FbgemmFp8Config's fields as JSON ({"activation_scale_ub": 1200, "modules_to_not_convert": [...]}).
  static QuantizationConfig fbgemm_fp8(const Json& options);

  // FbgemmFp8Config: whether the Linear `module` (e.g. "model.layers.0.self_attn.q_proj") is converted.
  bool converts(const std::string& module) const;
  // compressed-tensors: whether `module` matches an ignore entry.
  bool ignores(const std::string& module) const;
};

}  // namespace l4
