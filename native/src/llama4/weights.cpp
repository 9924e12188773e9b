#include "weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "../kernels/quantized.h"
#include "../thread_pool.h"

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

WeightLoader::WeightLoader(const Checkpoint& ckpt, const TextConfig& config, const std::string& dtype, QuantizationConfig quant,
                           bool use_mmap)
    : ckpt_(ckpt), config_(config), dtype_(dtype), quant_(std::move(quant)), use_mmap_(use_mmap) {
  if (dtype_ != "auto" && dtype_ != "float32" && dtype_ != "bfloat16" && dtype_ != "float16" && dtype_ != "q8" &&
      dtype_ != "q4")
    throw std::runtime_error("dtype \"" + dtype_ + "\" is not supported (auto, float32, bfloat16, float16, q8, q4)");
  if (quant_.method != QuantizationConfig::Method::None && (dtype_ == "q8" || dtype_ == "q4"))
    throw std::runtime_error("dtype \"" + dtype_ + "\" quantizes a float checkpoint at load; it cannot be combined with " +
                             (quant_.method == QuantizationConfig::Method::FbgemmFp8 ? std::string("FbgemmFp8Config")
                                                                                      : ckpt_.dir() + "'s quantization_config"));
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
  WeightBytes& buf = own(size_t(t.numel()) * 2);
  uint16_t* out = reinterpret_cast<uint16_t*>(buf.data());
  std::vector<float> row(m.cols);
  for (int64_t r = 0; r < m.rows; r++) {
    row_to_f32(m, r, row.data());
    for (int64_t c = 0; c < m.cols; c++)
      out[r * m.cols + c] = target == DType::BF16 ? f32_to_bf16(row[c]) : f32_to_f16(row[c]);
  }
  m.dtype = target;
  m.data = buf.data();
  return m;
}

WeightBytes& WeightLoader::own(size_t bytes) {
  owned_.push_back(std::make_unique<WeightBytes>(bytes));
  converted_bytes_ += bytes;
  return *owned_.back();
}

Matrix WeightLoader::quantized(const Matrix& m, DType target) {
  auto buf = std::make_unique<WeightBytes>();
  const Matrix q = quantize_matrix(m, target, *buf);
  converted_bytes_ += buf->size();
  owned_.push_back(std::move(buf));
  return q;
}

Matrix WeightLoader::resident(const std::string& tensor, Matrix m) {
  const TensorInfo& t = ckpt_.get(tensor);
  if (use_mmap_ || m.data != t.data || t.nbytes < HugePageAllocator<uint8_t>::kMinMappedBytes) return m;
  WeightBytes& copy = own(t.nbytes);
  constexpr size_t kPiece = size_t(64) << 20;
  const auto* from = static_cast<const uint8_t*>(t.data);
  for (size_t at = 0; at < t.nbytes; at += kPiece) {
    const size_t n = std::min(kPiece, t.nbytes - at);
    std::memcpy(copy.data() + at, from + at, n);
    Checkpoint::release(from + at, n);
  }
  m.data = copy.data();
  return m;
}

namespace {
// dst [cols, rows] = src [rows, cols] (rows ld elements apart), in tiles that stay in L1.
template <class T>
void transpose(const T* src, int64_t ld, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kTile = 64;
  parallel_items((cols + kTile - 1) / kTile, kTile * rows, [&](int64_t t0, int64_t t1) {
    for (int64_t c0 = t0 * kTile; c0 < std::min(cols, t1 * kTile); c0 += kTile)
      for (int64_t r0 = 0; r0 < rows; r0 += kTile)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); c++)
          for (int64_t r = r0; r < std::min(rows, r0 + kTile); r++) dst[c * rows + r] = src[r * ld + c];
  });
}
}  // namespace

Matrix WeightLoader::linear_layout(const Matrix& m) {
  const int64_t K = m.rows, N = m.cols;
  WeightBytes& copy = own(size_t(K * N) * dtype_size(m.dtype));
  if (dtype_size(m.dtype) == 2)
    transpose(static_cast<const uint16_t*>(m.data), m.ld(), K, N, reinterpret_cast<uint16_t*>(copy.data()));
  else
    transpose(static_cast<const uint32_t*>(m.data), m.ld(), K, N, reinterpret_cast<uint32_t*>(copy.data()));
  Matrix t;
  t.dtype = m.dtype;
  t.data = copy.data();
  t.rows = N;
  t.cols = K;
  return t;
}

bool WeightLoader::quantizes_at_load(const std::string& module) const {
  return dtype_ == "q8" || dtype_ == "q4" || (quant_.method == QuantizationConfig::Method::FbgemmFp8 && quant_.converts(module));
}

Matrix WeightLoader::quantized_at_load(const std::string& module, const Matrix& m, bool lm_head, std::vector<std::string> replaces) {
  if (!quantizes_at_load(module)) return m;
  Matrix q;
  if (dtype_ == "q8" || dtype_ == "q4") {  // lm_head stays at 8 bits under q4: its errors go straight into every logit
    q = quantized(m, dtype_ == "q8" || lm_head ? DType::Q8 : DType::Q4);
  } else {
    q = quantized(m, DType::F8_E4M3);
    q.fp8_activations = Matrix::Fp8Activations::PerTokenBounded;
    q.activation_ub = float(quant_.activation_scale_ub);
  }
  quantized_modules_.push_back({module, q, std::move(replaces)});
  return q;
}

Matrix WeightLoader::linear(const std::string& module, int64_t out, int64_t in, bool lm_head) {
  const bool ignored = quant_.method == QuantizationConfig::Method::CompressedTensors && quant_.ignores(module);
  const bool packed_weight = ckpt_.has(module + ".weight_packed");
  const bool stored_quantized =
      packed_weight || (ckpt_.has(module + ".weight") &&
                        (ckpt_.get(module + ".weight").dtype == DType::F8_E4M3 || ckpt_.get(module + ".weight").dtype == DType::I8));
  if (stored_quantized && quant_.method != QuantizationConfig::Method::CompressedTensors)
    throw std::runtime_error(ckpt_.dir() + ": " + module + " is stored quantized, but config.json has no compressed-tensors "
                             "quantization_config to say how");
  if (stored_quantized && ignored)
    throw std::runtime_error(ckpt_.dir() + ": " + module + " is stored quantized, but quantization_config.ignore lists it");
  if (stored_quantized) {
    const Matrix q = packed_weight || ckpt_.get(module + ".weight").dtype == DType::I8 ? packed(module, out, in) : fp8(module, out, in);
    std::vector<std::string> replaces;
    for (const char* suffix : {".weight", ".weight_packed", ".weight_scale", ".weight_shape"})
      if (ckpt_.has(module + suffix)) replaces.push_back(module + suffix);
    quantized_modules_.push_back({module, q, replaces});
    return q;
  }
  const Matrix m = matrix(module + ".weight", {out, in});
  if (!quantizes_at_load(module)) return resident(module + ".weight", m);
  const Matrix q = quantized_at_load(module, m, lm_head, {module + ".weight"});
  if (m.data == ckpt_.get(module + ".weight").data) ckpt_.release(module + ".weight");
  return q;
}

namespace {
// A small float tensor (a scale) as f32.
std::vector<float> floats(const TensorInfo& t) {
  if (!is_float(t.dtype))
    throw std::runtime_error(t.file + ": tensor " + t.name + " has dtype " + dtype_name(t.dtype) + "; expected F32, BF16 or F16");
  std::vector<float> v(t.numel());
  to_f32(Matrix{t.dtype, t.data, 1, t.numel()}, v.data());
  return v;
}
}  // namespace

Matrix WeightLoader::packed(const std::string& module, int64_t out, int64_t in) {
  const std::string scale_name = module + ".weight_scale";
  if (ckpt_.has(module + ".weight_zero_point"))
    throw std::runtime_error(ckpt_.dir() + ": " + module + ".weight_zero_point: asymmetric int weights are not supported");
  if (!ckpt_.has(scale_name)) throw std::runtime_error(ckpt_.dir() + ": missing tensor " + scale_name + " for the quantized " + module);
  const bool int8_tensor = !ckpt_.has(module + ".weight_packed");  // int-quantized: one int8 per weight
  const TensorInfo& w = ckpt_.get(module + (int8_tensor ? ".weight" : ".weight_packed"));
  int bits = 8;
  if (!int8_tensor) {
    const bool shaped = w.dtype == DType::I32 && w.shape.size() == 2 && w.shape[0] == out &&
                        (w.shape[1] * 8 == in || w.shape[1] * 4 == in);
    if (!shaped)
      throw std::runtime_error(w.file + ": tensor " + w.name + " has dtype " + dtype_name(w.dtype) + " and shape " + w.shape_str() +
                               "; expected I32 [" + std::to_string(out) + ", " + std::to_string(in / 8) + "] (int4) or [" +
                               std::to_string(out) + ", " + std::to_string(in / 4) + "] (int8) for a [" + std::to_string(out) +
                               ", " + std::to_string(in) + "] weight");
    bits = w.shape[1] * 8 == in ? 4 : 8;
    if (ckpt_.has(module + ".weight_shape")) {
      const TensorInfo& ws = ckpt_.get(module + ".weight_shape");
      const auto* dims = reinterpret_cast<const int64_t*>(ws.data);
      if (ws.dtype != DType::I64 || ws.numel() != 2 || dims[0] != out || dims[1] != in)
        throw std::runtime_error(ws.file + ": tensor " + ws.name + " does not say [" + std::to_string(out) + ", " +
                                 std::to_string(in) + "], the shape config.json gives " + module);
    }
  } else if (w.shape != std::vector<int64_t>{out, in}) {
    throw std::runtime_error(w.file + ": tensor " + w.name + " has shape " + w.shape_str() + ", expected " + shape_str({out, in}));
  }
  const TensorInfo& st = ckpt_.get(scale_name);
  const std::vector<float> scale = floats(st);
  // [out, groups] (group strategy), [out, 1] (channel) or one value (tensor).
  const int64_t groups = st.numel() == 1 ? 1 : st.numel() / out;
  const bool shaped = st.numel() == 1 || (st.shape.size() == 2 && st.shape[0] == out && in % st.shape[1] == 0 &&
                                          (st.shape[1] == 1 || (in / st.shape[1]) % kQuantBlock == 0));
  if (!shaped)
    throw std::runtime_error(st.file + ": tensor " + scale_name + " has shape " + st.shape_str() + "; expected [" +
                             std::to_string(out) + ", 1] or [" + std::to_string(out) + ", in / group_size] with groups of a "
                             "multiple of 32 inputs");
  const int64_t group = in / groups;
  const auto* words = reinterpret_cast<const uint32_t*>(w.data);
  const auto* bytes = reinterpret_cast<const int8_t*>(w.data);
  const int64_t words_per_row = in * bits / 32;
  auto& storage = own(0);
  const Matrix q = pack_matrix(bits == 4 ? DType::Q4 : DType::Q8, out, in, [&](int64_t n, int8_t* qrow, uint16_t* scales) {
    for (int64_t k = 0; k < in; k++) {
      if (int8_tensor) {
        qrow[k] = bytes[n * in + k];
      } else {  // value k in bits [k b, (k + 1) b) of the row's little-endian words, stored as q + 2^(b-1)
        const uint32_t word = words[n * words_per_row + k * bits / 32];
        const int shift = int(k * bits % 32);
        qrow[k] = int8_t(int((word >> shift) & ((1u << bits) - 1)) - (1 << (bits - 1)));
      }
    }
    for (int64_t b = 0; b < quant_blocks(in); b++)
      scales[b] = f32_to_f16(scale[st.numel() == 1 ? 0 : n * groups + b * kQuantBlock / group]);
  }, storage);
  converted_bytes_ += storage.size();
  return q;
}

Matrix WeightLoader::fp8(const std::string& module, int64_t out, int64_t in) {
  const TensorInfo& w = ckpt_.get(module + ".weight");
  if (w.shape != std::vector<int64_t>{out, in})
    throw std::runtime_error(w.file + ": tensor " + w.name + " has shape " + w.shape_str() + ", expected " + shape_str({out, in}));
  const std::string scale_name = module + ".weight_scale";
  if (!ckpt_.has(scale_name)) throw std::runtime_error(ckpt_.dir() + ": missing tensor " + scale_name + " for the FP8 " + module);
  const TensorInfo& st = ckpt_.get(scale_name);
  const std::vector<float> scale = floats(st);
  if (st.numel() != 1 && st.numel() != out)
    throw std::runtime_error(st.file + ": tensor " + scale_name + " has shape " + st.shape_str() + "; expected [" +
                             std::to_string(out) + ", 1] (channel) or one value (tensor)");
  WeightBytes& row_scales = own(size_t(out) * sizeof(float));
  auto* rs = reinterpret_cast<float*>(row_scales.data());
  for (int64_t n = 0; n < out; n++) rs[n] = scale[st.numel() == 1 ? 0 : n];
  Matrix m;  // the FP8 values as stored (resident() copies them out of the mapped file)
  m.dtype = DType::F8_E4M3;
  m.data = w.data;
  m.rows = out;
  m.cols = in;
  m.row_scales = rs;
  m.fp8_activations = quant_.fp8_dynamic_activations ? Matrix::Fp8Activations::PerToken : Matrix::Fp8Activations::None;
  return resident(w.name, m);
}

void WeightLoader::experts(const std::string& module, MoeWeights& moe) {
  const TextConfig& c = config_;
  const int64_t E = c.num_local_experts, H = c.hidden_size, I = c.intermediate_size;
  if (!ckpt_.has(module + ".gate_up_proj")) {  // one Llama4TextMLP per expert, as quantized checkpoints store them
    for (int64_t e = 0; e < E; e++) {
      const std::string p = module + "." + std::to_string(e) + ".";
      moe.gate_proj.push_back(linear(p + "gate_proj", I, H));
      moe.up_proj.push_back(linear(p + "up_proj", I, H));
      moe.down_proj.push_back(linear(p + "down_proj", H, I));
    }
    return;
  }
  // The fused tensors [E, H, 2I] and [E, I, H]: columns [0, I) of gate_up_proj are gate, [I, 2I) up.
  Matrix gate_up = matrix(module + ".gate_up_proj", {E, H, 2 * I}), down = matrix(module + ".down_proj", {E, I, H});
  bool quantizing = false;
  for (int64_t e = 0; e < E; e++)
    for (const char* name : {".gate_proj", ".up_proj", ".down_proj"})
      quantizing = quantizing || quantizes_at_load(module + "." + std::to_string(e) + name);
  const bool in_place = gate_up.data == ckpt_.get(module + ".gate_up_proj").data && down.data == ckpt_.get(module + ".down_proj").data;
  // Used as stored from the mapped file, each expert is copied out in nn.Linear layout ([out, in]), so that decode
  // streams it row by row like every other Linear: in the fused [in, out] layout a token's product reads each row
  // of W in pieces, one per thread, and ran at half the bandwidth of the Linears. use_mmap keeps the tensors mapped.
  const bool relayout = !quantizing && in_place && !use_mmap_;
  // Quantized, they are saved as one Linear per expert; the first stands for the two fused tensors.
  const std::vector<std::string> fused{module + ".gate_up_proj", module + ".down_proj"};
  auto expert = [&](const Matrix& all, int64_t e, const char* name, int64_t in, int64_t first, int64_t count) {
    Matrix v = all.slice_rows(e * in, in);
    v.data = static_cast<const uint8_t*>(v.data) + size_t(first) * dtype_size(v.dtype);
    v.cols = count;
    v.stride = all.cols;
    v.in_out = true;
    if (relayout) return linear_layout(v);
    const bool first_one = e == 0 && std::string(name) == "gate_proj";
    return quantized_at_load(module + "." + std::to_string(e) + "." + name, v, false,
                             first_one ? fused : std::vector<std::string>{});
  };
  for (int64_t e = 0; e < E; e++) {
    moe.gate_proj.push_back(expert(gate_up, e, "gate_proj", H, 0, I));
    moe.up_proj.push_back(expert(gate_up, e, "up_proj", H, I, I));
    moe.down_proj.push_back(expert(down, e, "down_proj", I, 0, H));
    if (in_place && moe.gate_proj.back().data != gate_up.slice_rows(e * H, H).data) {
      // Copies made (quantized or relaid): the expert's mapped pages go, so loading holds one expert's at a time.
      Checkpoint::release(gate_up.slice_rows(e * H, H).data, gate_up.slice_rows(e * H, H).bytes());
      Checkpoint::release(down.slice_rows(e * I, I).data, down.slice_rows(e * I, I).bytes());
    }
  }
}

void WeightLoader::check_ignore_list() const {
  for (const std::string& entry : quant_.ignore) {
    bool found = false;
    for (const auto& [name, t] : ckpt_.tensors()) {
      const std::string module = name.substr(0, name.rfind('.'));
      QuantizationConfig one;
      one.ignore = {entry};
      if (one.ignores(module)) {
        found = true;
        break;
      }
    }
    if (!found)
      throw std::runtime_error(ckpt_.dir() + ": quantization_config.ignore names \"" + entry +
                               "\", which matches no module of the checkpoint");
  }
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
  check_ignore_list();
  w.embed_tokens = matrix(prefix + "embed_tokens.weight", {V, H});
  w.norm = vector_f32(prefix + "norm.weight", H);
  if (ckpt_.has(head) || !c.tie_word_embeddings) w.lm_head = linear(head.substr(0, head.size() - 7), V, H, true);
  else w.lm_head = w.embed_tokens;
  w.embed_tokens_looked_up_in_place =
      w.embed_tokens.data == ckpt_.get(prefix + "embed_tokens.weight").data && w.lm_head.data != w.embed_tokens.data;

  // Bytes of the text model's tensors: outside the decoder layers (`done` before the first), per layer, and in all.
  // The last report is always (total, total).
  std::vector<size_t> layer_bytes(size_t(c.num_hidden_layers), 0);
  size_t done = 0;
  const std::string layers_prefix = prefix + "layers.";
  for (const auto& [name, t] : ckpt_.tensors()) {
    if (name.rfind(prefix, 0) != 0 && name != head) continue;
    if (name.rfind(layers_prefix, 0) != 0) {
      done += t.nbytes;
      continue;
    }
    const size_t layer = size_t(std::strtoull(name.c_str() + layers_prefix.size(), nullptr, 10));
    if (layer < layer_bytes.size()) layer_bytes[layer] += t.nbytes;
  }
  size_t total = done;
  for (size_t b : layer_bytes) total += b;

  for (int64_t i = 0; i < c.num_hidden_layers; i++) {
    const std::string p = prefix + "layers." + std::to_string(i) + ".";
    DecoderLayerWeights l;
    l.input_layernorm = vector_f32(p + "input_layernorm.weight", H);
    l.post_attention_layernorm = vector_f32(p + "post_attention_layernorm.weight", H);
    AttentionWeights& a = l.self_attn;
    a.q_proj = linear(p + "self_attn.q_proj", c.num_attention_heads * D, H);
    a.k_proj = linear(p + "self_attn.k_proj", c.num_key_value_heads * D, H);
    a.v_proj = linear(p + "self_attn.v_proj", c.num_key_value_heads * D, H);
    a.o_proj = linear(p + "self_attn.o_proj", H, c.num_attention_heads * D);
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
      experts(f + "experts", l.moe);
      l.moe.shared_expert.gate_proj = linear(f + "shared_expert.gate_proj", I, H);
      l.moe.shared_expert.up_proj = linear(f + "shared_expert.up_proj", I, H);
      l.moe.shared_expert.down_proj = linear(f + "shared_expert.down_proj", H, I);
    } else {
      const int64_t M = c.intermediate_size_mlp;
      l.mlp.gate_proj = linear(p + "feed_forward.gate_proj", M, H);
      l.mlp.up_proj = linear(p + "feed_forward.up_proj", M, H);
      l.mlp.down_proj = linear(p + "feed_forward.down_proj", H, M);
    }
    w.layers.push_back(std::move(l));
    done += layer_bytes[size_t(i)];
    if (layer_loaded) layer_loaded(done, total);
  }
  w.converted_bytes = converted_bytes_;
  w.quantized = std::move(quantized_modules_);
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
