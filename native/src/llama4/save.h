// save_pretrained for a model that holds quantized Linears: a compressed-tensors checkpoint that transformers and
// this engine load as they are, so quantizing at load is done once.
#pragma once
#include <string>

#include "text_model.h"

namespace l4 {

// Writes `path` (a model.safetensors): every Linear the model holds quantized as compressed-tensors stores it
// (int4 / int8: pack-quantized weight_packed I32 + weight_scale F16 per group of 32 inputs + weight_shape;
// FP8: float-quantized weight F8_E4M3 + weight_scale F32 per output row), fused experts split into one Linear
// per expert, and every other tensor of the checkpoint as it is stored. Returns the quantization_config object
// for config.json (targets name each quantized module). Throws when the model holds nothing quantized.
std::string save_compressed_tensors(const TextModel& model, const std::string& path);

}  // namespace l4
