#include "weights.h"

#include <sstream>
#include <stdexcept>

namespace l4 {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); i++) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}
bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }
}  // namespace

WeightLoader::WeightLoader(const Checkpoint& ckpt, const TextConfig& config, const std::string& dtype)
    : ckpt_(ckpt), config_(config), dtype_(dtype) {
  if (dtype_ != "auto" && dtype_ != "float32" && dtype_ != "bfloat16" && dtype_ != "float16" && dtype_ != "q8" &&
      dtype_ != "q4")
    throw std::runtime_error("dtype \"" + dtype_ + "\" is not supported (auto, float32, bfloat16, float16, q8, q4)");
}

const TensorInfo& WeightLoader::tensor(const std::string& name, const std::vector<int64_t>& shape) {
  const TensorInfo& t = ckpt_.get(name);
  if (t.shape != shape)
    throw std::runtime_error(t.file + ": tensor " + name + " has shape " + t.shape_str() + ", expected " +
                             shape_str(shape) + " from config.json");
  if (!is_float(t.dtype))
    throw std::runtime_error(t.file + ": tensor " + name + " has dtype " + dtype_name(t.dtype) +
                             "; expected F32, BF16 or F16");
  return t;
}

Matrix WeightLoader::matrix(const std::string& name, std::vector<int64_t> shape) {
  const TensorInfo& t = tensor(name, shape);
  Matrix m;
  m.dtype = t.dtype;
  m.data = t.data;
  m.cols = shape.back();
  m.rows = t.numel() / m.cols;
  DType target = t.dtype;
  if (dtype_ == "bfloat16") target = DType::BF16;
  if (dtype_ == "float16") target = DType::F16;
  if (target == t.dtype) return m;  // zero-copy
  auto buf = std::make_unique<std::vector<uint8_t>>(size_t(t.numel()) * 2);
  uint16_t* out = reinterpret_cast<uint16_t*>(buf->data());
  std::vector<float> row(m.cols);
  for (int64_t r = 0; r < m.rows; r++) {
    row_to_f32(m, r, row.data());
    for (int64_t c = 0; c < m.cols; c++)
      out[r * m.cols + c] = target == DType::BF16 ? f32_to_bf16(row[c]) : f32_to_f16(row[c]);
  }
  converted_bytes_ += buf->size();
  m.dtype = target;
  m.data = buf->data();
  owned_.push_back(std::move(buf));
  return m;
}

Matrix WeightLoader::quantized(const Matrix& m, DType target) {
  auto buf = std::make_unique<std::vector<uint8_t>>();
  const Matrix q = quantize_matrix(m, target, *buf);
  converted_bytes_ += buf->size();
  owned_.push_back(std::move(buf));
  return q;
}

Matrix WeightLoader::linear_weight(const std::string& name, std::vector<int64_t> shape, bool lm_head) {
  const Matrix m = matrix(name, std::move(shape));
  if (dtype_ != "q8" && dtype_ != "q4") return m;
  // lm_head stays at 8 bits under q4 as well: its errors go straight into every logit.
  const Matrix q = quantized(m, dtype_ == "q8" || lm_head ? DType::Q8 : DType::Q4);
  ckpt_.release(name);
  return q;
}

std::vector<Matrix> WeightLoader::experts(const std::string& name, int64_t E, int64_t in, int64_t out, int64_t first,
                                          int64_t count) {
  const Matrix all = matrix(name, {E, in, out});
  std::vector<Matrix> views;
  for (int64_t e = 0; e < E; e++) {
    Matrix v = all.slice_rows(e * in, in);
    v.data = static_cast<const uint8_t*>(v.data) + size_t(first) * dtype_size(v.dtype);
    v.cols = count;
    v.stride = out;
    v.in_out = true;
    views.push_back(dtype_ == "q8" || dtype_ == "q4" ? quantized(v, dtype_ == "q8" ? DType::Q8 : DType::Q4) : v);
  }
  if (dtype_ == "q8" || dtype_ == "q4") ckpt_.release(name);
  return views;
}

std::vector<float> WeightLoader::vector_f32(const std::string& name, int64_t size) { return tensor_f32(name, {size}); }

std::vector<float> WeightLoader::tensor_f32(const std::string& name, const std::vector<int64_t>& shape) {
  const TensorInfo& t = tensor(name, shape);
  Matrix m{t.dtype, t.data, 1, t.numel()};
  std::vector<float> v(t.numel());
  to_f32(m, v.data());
  return v;
}

LayerNormWeights WeightLoader::layer_norm(const std::string& prefix, int64_t size) {
  return {vector_f32(prefix + "weight", size), vector_f32(prefix + "bias", size)};
}

TextWeights WeightLoader::load() {
  const TextConfig& c = config_;
  TextWeights w;
  // Llama4ForConditionalGeneration checkpoints (as published) nest the text model under
  // language_model.; Llama4ForCausalLM ones start at model.
  std::string prefix, head;
  if (ckpt_.has("language_model.model.embed_tokens.weight")) {
    prefix = "language_model.model.";
    head = "language_model.lm_head.weight";
    w.layout = "Llama4ForConditionalGeneration";
  } else if (ckpt_.has("model.language_model.embed_tokens.weight")) {
    prefix = "model.language_model.";
    head = "lm_head.weight";
    w.layout = "Llama4ForConditionalGeneration";
  } else if (ckpt_.has("model.embed_tokens.weight")) {
    prefix = "model.";
    head = "lm_head.weight";
    w.layout = "Llama4ForCausalLM";
  } else {
    throw std::runtime_error(ckpt_.dir() +
                             ": missing tensor model.embed_tokens.weight (or language_model.model.embed_tokens.weight): "
                             "not a Llama 4 text checkpoint");
  }
  const int64_t H = c.hidden_size, V = c.vocab_size, D = c.head_dim;
  const int64_t E = c.num_local_experts, I = c.intermediate_size;
  w.embed_tokens = matrix(prefix + "embed_tokens.weight", {V, H});
  w.norm = vector_f32(prefix + "norm.weight", H);
  if (ckpt_.has(head) || !c.tie_word_embeddings) w.lm_head = linear_weight(head, {V, H}, true);
  else if (dtype_ == "q8" || dtype_ == "q4") w.lm_head = quantized(w.embed_tokens, DType::Q8);
  else w.lm_head = w.embed_tokens;

  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    DecoderLayerWeights l;
    l.input_layernorm = vector_f32(p + "input_layernorm.weight", H);
    l.post_attention_layernorm = vector_f32(p + "post_attention_layernorm.weight", H);
    AttentionWeights& a = l.self_attn;
    a.q_proj = linear_weight(p + "self_attn.q_proj.weight", {c.num_attention_heads * D, H});
    a.k_proj = linear_weight(p + "self_attn.k_proj.weight", {c.num_key_value_heads * D, H});
    a.v_proj = linear_weight(p + "self_attn.v_proj.weight", {c.num_key_value_heads * D, H});
    a.o_proj = linear_weight(p + "self_attn.o_proj.weight", {H, c.num_attention_heads * D});
    if (c.attention_bias) {
      a.q_bias = vector_f32(p + "self_attn.q_proj.bias", c.num_attention_heads * D);
      a.k_bias = vector_f32(p + "self_attn.k_proj.bias", c.num_key_value_heads * D);
      a.v_bias = vector_f32(p + "self_attn.v_proj.bias", c.num_key_value_heads * D);
      a.o_bias = vector_f32(p + "self_attn.o_proj.bias", H);
    }
    l.is_moe = c.is_moe[i];
    if (l.is_moe) {
      const std::string f = p + "feed_forward.";
      l.moe.router = matrix(f + "router.weight", {E, H});
      l.moe.gate_proj = experts(f + "experts.gate_up_proj", E, H, 2 * I, 0, I);
      l.moe.up_proj = experts(f + "experts.gate_up_proj", E, H, 2 * I, I, I);
      l.moe.down_proj = experts(f + "experts.down_proj", E, I, H, 0, H);
      l.moe.shared_expert.gate_proj = linear_weight(f + "shared_expert.gate_proj.weight", {I, H});
      l.moe.shared_expert.up_proj = linear_weight(f + "shared_expert.up_proj.weight", {I, H});
      l.moe.shared_expert.down_proj = linear_weight(f + "shared_expert.down_proj.weight", {H, I});
    } else {
      const int64_t M = c.intermediate_size_mlp;
      l.mlp.gate_proj = linear_weight(p + "feed_forward.gate_proj.weight", {M, H});
      l.mlp.up_proj = linear_weight(p + "feed_forward.up_proj.weight", {M, H});
      l.mlp.down_proj = linear_weight(p + "feed_forward.down_proj.weight", {H, M});
    }
    w.layers.push_back(std::move(l));
  }
  w.converted_bytes = converted_bytes_;
  return w;
}

VisionWeights WeightLoader::load_vision(const VisionConfig& c) {
  // As published: vision_model.* and multi_modal_projector.* at the top; the model.-prefixed layout
  // nests them like its language_model.
  const std::string root = ckpt_.has("model.vision_model.patch_embedding.linear.weight") ? "model." : "";
  const std::string p = root + "vision_model.";
  const int64_t D = c.hidden_size, I = c.intermediate_size, patches = c.patches_per_side * c.patches_per_side;
  const size_t converted_before = converted_bytes_;
  VisionWeights w;
  w.patch_embedding = matrix(p + "patch_embedding.linear.weight", {D, c.num_channels * c.patch_size * c.patch_size});
  w.class_embedding = vector_f32(p + "class_embedding", D);
  w.positional_embedding = tensor_f32(p + "positional_embedding_vlm", {patches + 1, D});
  w.layernorm_pre = layer_norm(p + "layernorm_pre.", D);
  w.layernorm_post = layer_norm(p + "layernorm_post.", D);
  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const std::string lp = p + "model.layers." + std::to_string(i) + ".";
    VisionEncoderLayerWeights l;
    l.input_layernorm = layer_norm(lp + "input_layernorm.", D);
    l.post_attention_layernorm = layer_norm(lp + "post_attention_layernorm.", D);
    AttentionWeights& a = l.self_attn;
    a.q_proj = matrix(lp + "self_attn.q_proj.weight", {D, D});
    a.k_proj = matrix(lp + "self_attn.k_proj.weight", {D, D});
    a.v_proj = matrix(lp + "self_attn.v_proj.weight", {D, D});
    a.o_proj = matrix(lp + "self_attn.o_proj.weight", {D, D});
    a.q_bias = vector_f32(lp + "self_attn.q_proj.bias", D);
    a.k_bias = vector_f32(lp + "self_attn.k_proj.bias", D);
    a.v_bias = vector_f32(lp + "self_attn.v_proj.bias", D);
    a.o_bias = vector_f32(lp + "self_attn.o_proj.bias", D);
    l.fc1 = matrix(lp + "mlp.fc1.weight", {I, D});
    l.fc1_bias = vector_f32(lp + "mlp.fc1.bias", I);
    l.fc2 = matrix(lp + "mlp.fc2.weight", {D, I});
    l.fc2_bias = vector_f32(lp + "mlp.fc2.bias", D);
    w.layers.push_back(std::move(l));
  }
  w.adapter_fc1 = matrix(p + "vision_adapter.mlp.fc1.weight", {c.projector_input_dim, I});
  w.adapter_fc2 = matrix(p + "vision_adapter.mlp.fc2.weight", {c.projector_output_dim, c.projector_output_dim});
  w.projector = matrix(root + "multi_modal_projector.linear_1.weight", {config_.hidden_size, c.vision_output_dim});
  w.converted_bytes = converted_bytes_ - converted_before;
  return w;
}

}  // namespace l4
