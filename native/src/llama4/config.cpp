#include "config.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "../checked.h"

namespace l4 {

namespace {

// Config sizes beyond these are no real model: their products stay far from 64-bit overflow even as byte
// counts, and a per-layer list of kMaxLayers entries is still small.
const double kMaxConfigInteger = double(int64_t(1) << 40);
const int64_t kMaxLayers = int64_t(1) << 16;
const int64_t kMaxElements = int64_t(1) << 50;

std::string number_text(double x) {
  std::ostringstream o;
  o << x;
  return o.str();
}

struct Reader {
  const Json& j;
  const std::string& where;

  [[noreturn]] void bad(const std::string& key, const std::string& msg) const {
    throw std::runtime_error(where + ": \"" + key + "\" " + msg);
  }
  int64_t integer(const std::string& key, int64_t fallback, bool required, int64_t min_value) const {
    const Json& v = j[key];
    if (v.is_null()) {
      if (required) throw std::runtime_error(where + ": missing required key \"" + key + "\"");
      return fallback;
    }
    if (!v.is_number() || v.number() != std::floor(v.number())) bad(key, "must be an integer");
    if (v.number() < double(min_value)) bad(key, "must be >= " + std::to_string(min_value));
    if (v.number() > kMaxConfigInteger) bad(key, "is " + number_text(v.number()) + ", larger than any model's (at most 2^40)");
    return int64_t(v.number());
  }
  double real(const std::string& key, double fallback) const {
    const Json& v = j[key];
    if (v.is_null()) return fallback;
    if (!v.is_number() || !std::isfinite(v.number())) bad(key, "must be a finite number");
    return v.number();
  }
  bool flag(const std::string& key, bool fallback) const {
    const Json& v = j[key];
    if (v.is_null()) return fallback;
    if (!v.is_bool()) bad(key, "must be true or false");
    return v.boolean();
  }
  std::vector<int64_t> int_list(const std::string& key) const {
    std::vector<int64_t> out;
    if (!j[key].is_array()) bad(key, "must be a list of integers");
    for (const auto& v : j[key].array()) {
      if (!v.is_number() || v.number() != std::floor(v.number()) || std::fabs(v.number()) > kMaxConfigInteger)
        bad(key, "must be a list of integers");
      out.push_back(int64_t(v.number()));
    }
    return out;
  }
};

RopeConfig read_rope(const Json& text, const std::string& where) {
  RopeConfig rope;
  // transformers 5 writes rope_parameters; Meta's published config.json has rope_theta + rope_scaling.
  const Json& params = !text["rope_parameters"].is_null() ? text["rope_parameters"] : text["rope_scaling"];
  rope.theta = Reader{text, where}.real("rope_theta", rope.theta);
  if (params.is_null()) return rope;
  if (!params.is_object()) throw std::runtime_error(where + ": rope parameters must be an object");
  Reader r{params, where};
  const Json& type = params.has("rope_type") ? params["rope_type"] : params["type"];
  if (!type.is_null() && !type.is_string()) throw std::runtime_error(where + ": \"rope_type\" must be a string");
  if (type.is_string()) rope.type = type.string();
  rope.theta = r.real("rope_theta", rope.theta);
  if (rope.type == "llama3") {
    rope.factor = r.real("factor", 8.0);
    rope.low_freq_factor = r.real("low_freq_factor", 1.0);
    rope.high_freq_factor = r.real("high_freq_factor", 4.0);
    rope.original_max_position_embeddings = r.real("original_max_position_embeddings", 8192);
    // high_freq_factor == low_freq_factor (Scout's published config) leaves the smoothing band
    // empty, so no frequency is interpolated: valid, as in transformers.
  } else if (rope.type != "default") {
    throw std::runtime_error(where + ": rope_type \"" + rope.type + "\" is not supported (default, llama3)");
  }
  return rope;
}

// Reads vision_config and checks that Llama4VisionModel can run with it; throws naming the keys.
void read_vision(VisionConfig& c, const Json& root, const std::string& where) {
  const Json& v = root["vision_config"];
  if (!v.is_object()) throw std::runtime_error(where + ": \"vision_config\" must be an object");
  // Llama4Config maps image_token_id onto image_token_index; config.json may spell either.
  c.image_token_id = Reader{root, where}.integer(root.has("image_token_index") ? "image_token_index" : "image_token_id",
                                                 200092, false, 0);
  const std::string vwhere = where + ": vision_config";
  Reader r{v, vwhere};
  c.hidden_size = r.integer("hidden_size", 768, false, 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 34, false, 1);
  c.num_attention_heads = r.integer("num_attention_heads", 16, false, 1);
  c.num_channels = r.integer("num_channels", 3, false, 1);
  c.intermediate_size = r.integer("intermediate_size", 5632, false, 1);
  c.image_size = r.integer("image_size", 448, false, 1);
  c.patch_size = r.integer("patch_size", 14, false, 1);
  c.vision_output_dim = r.integer("vision_output_dim", 7680, false, 1);
  c.projector_input_dim = r.integer("projector_input_dim", 4096, false, 1);
  c.projector_output_dim = r.integer("projector_output_dim", 4096, false, 1);
  c.pixel_shuffle_ratio = r.real("pixel_shuffle_ratio", 0.5);
  // transformers 5 writes rope_parameters; Meta's published config.json has rope_theta.
  c.rope_theta = r.real("rope_theta", 10000.0);
  if (v["rope_parameters"].is_object())
    c.rope_theta = Reader{v["rope_parameters"], vwhere + ".rope_parameters"}.real("rope_theta", c.rope_theta);

  auto fail = [&](const std::string& msg) { throw std::runtime_error(where + ": " + msg); };
  auto str = [](int64_t n) { return std::to_string(n); };
  if (c.image_size % c.patch_size)
    fail("vision_config.image_size (" + str(c.image_size) + ") must be a multiple of vision_config.patch_size (" +
         str(c.patch_size) + ")");
  if (c.hidden_size % c.num_attention_heads)
    fail("vision_config.hidden_size (" + str(c.hidden_size) + ") must be a multiple of vision_config.num_attention_heads (" +
         str(c.num_attention_heads) + ")");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  if (c.head_dim % 4)  // a complex pair per frequency, one set of frequencies per image axis
    fail("the 2-D vision RoPE needs vision_config.hidden_size / vision_config.num_attention_heads (" + str(c.head_dim) +
         ") to be a multiple of 4");
  c.patches_per_side = c.image_size / c.patch_size;
  checked_product({c.patches_per_side, c.patches_per_side, c.hidden_size}, where + ": vision_config patches x hidden_size", kMaxElements);
  checked_product({c.num_channels, c.patch_size, c.patch_size, c.hidden_size}, where + ": vision_config patch embedding", kMaxElements);
  checked_product({c.intermediate_size, c.hidden_size, c.num_hidden_layers}, where + ": vision_config intermediate_size x hidden_size x num_hidden_layers", kMaxElements);
  checked_product({c.projector_output_dim, c.projector_output_dim}, where + ": vision_config projector_output_dim^2", kMaxElements);
  if (c.num_hidden_layers > kMaxLayers) fail("vision_config.num_hidden_layers (" + str(c.num_hidden_layers) + ") is more than " + str(kMaxLayers));
  // pixel_shuffle reshapes the patch grid and the channels by the ratio: every size must stay whole.
  const double ratio = c.pixel_shuffle_ratio;
  auto whole = [](double x) { return x >= 1 && std::fabs(x - std::round(x)) < 1e-6; };
  if (!(ratio > 0 && ratio <= 1) || !whole(double(c.patches_per_side) * ratio) || !whole(double(c.hidden_size) / ratio) ||
      !whole(double(c.hidden_size) / (ratio * ratio)))
    fail("vision_config.pixel_shuffle_ratio (" + std::to_string(ratio) + ") must divide the " + str(c.patches_per_side) +
         "x" + str(c.patches_per_side) + " patch grid (image_size / patch_size) and vision_config.hidden_size (" +
         str(c.hidden_size) + ") into whole sizes");
  c.shuffled_side = int64_t(std::round(double(c.patches_per_side) * ratio));
  c.tokens_per_tile = c.shuffled_side * c.shuffled_side;
  const int64_t shuffled_dim = int64_t(std::round(double(c.hidden_size) / (ratio * ratio)));
  if (c.intermediate_size != shuffled_dim)
    fail("vision_config.intermediate_size (" + str(c.intermediate_size) +
         ") must equal vision_config.hidden_size / vision_config.pixel_shuffle_ratio^2 (" + str(shuffled_dim) +
         "): the vision adapter's fc1 takes the pixel-shuffled patches");
  if (c.projector_input_dim != c.projector_output_dim)
    fail("vision_config.projector_input_dim (" + str(c.projector_input_dim) + ") must equal vision_config.projector_output_dim (" +
         str(c.projector_output_dim) + "): the vision adapter's fc2 takes fc1's output");
  if (c.vision_output_dim != c.projector_output_dim)
    fail("vision_config.vision_output_dim (" + str(c.vision_output_dim) + ") must equal vision_config.projector_output_dim (" +
         str(c.projector_output_dim) + "): multi_modal_projector.linear_1 takes the vision adapter's output");
}

}  // namespace

TextConfig TextConfig::from_json(const Json& root, const std::string& where) {
  if (!root.is_object()) throw std::runtime_error(where + ": not a JSON object");
  TextConfig c;
  const Json& model_type = root["model_type"];
  if (!model_type.is_null() && !model_type.is_string()) throw std::runtime_error(where + ": \"model_type\" must be a string");
  if (model_type.is_string() && model_type.string() != "llama4" && model_type.string() != "llama4_text")
    throw std::runtime_error(where + ": model_type \"" + model_type.string() + "\" is not a Llama 4 model");
  // As the SDK (and transformers) read it: "llama4_text" is flat, "llama4" nests its text config, and without a
  // model_type a text_config decides.
  const bool nested = model_type.is_string() ? model_type.string() == "llama4" : root.has("text_config");
  const Json* text = &root;
  if (nested) {
    // transformers would fill a missing text_config with Scout's sizes; no checkpoint of ours is laid out so.
    if (!root["text_config"].is_object())
      throw std::runtime_error(where + ": model_type \"llama4\" needs a \"text_config\" object (a text-only config.json has model_type \"llama4_text\" and flat keys)");
    text = &root["text_config"];
    c.multimodal_layout = true;
  }

  Reader r{*text, where};
  c.vocab_size = r.integer("vocab_size", 0, true, 1);
  c.hidden_size = r.integer("hidden_size", 0, true, 1);
  c.intermediate_size = r.integer("intermediate_size", 0, true, 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 0, true, 1);
  c.num_attention_heads = r.integer("num_attention_heads", 0, true, 1);
  c.intermediate_size_mlp = r.integer("intermediate_size_mlp", 16384, false, 1);
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads, false, 1);
  c.head_dim = r.integer("head_dim", c.hidden_size / c.num_attention_heads, false, 2);
  if (c.head_dim % 2) throw std::runtime_error(where + ": \"head_dim\" must be even for RoPE");
  if (c.num_attention_heads % c.num_key_value_heads)
    throw std::runtime_error(where + ": num_attention_heads must be a multiple of num_key_value_heads");
  c.num_local_experts = r.integer("num_local_experts", 16, false, 1);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", 1, false, 1);
  if (c.num_experts_per_tok > c.num_local_experts)
    throw std::runtime_error(where + ": num_experts_per_tok exceeds num_local_experts");
  c.rms_norm_eps = r.real("rms_norm_eps", 1e-5);
  c.use_qk_norm = r.flag("use_qk_norm", true);
  c.attention_bias = r.flag("attention_bias", false);
  // tie_word_embeddings may sit on the outer config of the multimodal layout.
  c.tie_word_embeddings = Reader{root, where}.flag("tie_word_embeddings", false) || r.flag("tie_word_embeddings", false);
  c.attention_chunk_size = text->has("attention_chunk_size") && (*text)["attention_chunk_size"].is_null()
                               ? 0
                               : r.integer("attention_chunk_size", 8192, false, 1);
  c.attn_temperature_tuning = r.flag("attn_temperature_tuning", true);
  c.floor_scale = r.real("floor_scale", 8192);
  c.attn_scale = r.real("attn_scale", 0.1);
  // It divides positions before a log; below 1 the attention scale grows without bound (infinite in f32).
  if (!(c.floor_scale >= 1)) throw std::runtime_error(where + ": \"floor_scale\" must be >= 1, got " + number_text(c.floor_scale));
  const Json& act = (*text)["hidden_act"];
  if (!act.is_null() && (!act.is_string() || act.string() != "silu"))
    throw std::runtime_error(where + ": hidden_act must be \"silu\" for the Llama 4 text model");
  c.rope = read_rope(*text, where);

  const int64_t L = c.num_hidden_layers;
  if (L > kMaxLayers)
    throw std::runtime_error(where + ": \"num_hidden_layers\" is " + std::to_string(L) + ", more than the " +
                             std::to_string(kMaxLayers) + " layers a checkpoint can be loaded with");
  // Every weight shape is a product of these; none may overflow when later multiplied by a dtype size or a batch.
  const std::string w = where + ": ";
  checked_product({c.num_attention_heads, c.head_dim}, w + "num_attention_heads x head_dim", kMaxElements);
  checked_product({c.num_attention_heads, c.head_dim, c.hidden_size}, w + "num_attention_heads x head_dim x hidden_size", kMaxElements);
  checked_product({c.vocab_size, c.hidden_size}, w + "vocab_size x hidden_size", kMaxElements);
  checked_product({c.num_local_experts, c.intermediate_size, c.hidden_size, 3}, w + "num_local_experts x intermediate_size x hidden_size x 3", kMaxElements);
  checked_product({c.intermediate_size_mlp, c.hidden_size, 3}, w + "intermediate_size_mlp x hidden_size x 3", kMaxElements);
  int64_t interval = r.integer("no_rope_layer_interval", 4, false, 1);
  c.use_rope.assign(L, true);
  std::vector<int64_t> no_rope;
  if (text->has("no_rope_layers") && !(*text)["no_rope_layers"].is_null()) no_rope = r.int_list("no_rope_layers");
  if (!no_rope.empty()) {
    if (int64_t(no_rope.size()) < L)
      throw std::runtime_error(where + ": \"no_rope_layers\" has fewer entries than num_hidden_layers");
    for (int64_t i = 0; i < L; i++) c.use_rope[i] = no_rope[i] != 0;
  } else {
    for (int64_t i = 0; i < L; i++) c.use_rope[i] = (i + 1) % interval != 0;
  }
  c.is_moe.assign(L, false);
  if (text->has("moe_layers") && !(*text)["moe_layers"].is_null()) {
    for (int64_t i : r.int_list("moe_layers")) {
      if (i < 0 || i >= L) throw std::runtime_error(where + ": \"moe_layers\" entry " + std::to_string(i) + " out of range");
      c.is_moe[i] = true;
    }
  } else {
    int64_t step = r.integer("interleave_moe_layer_step", 1, false, 1);
    for (int64_t i = step - 1; i < L; i += step) c.is_moe[i] = true;
  }
  c.chunked.assign(L, false);
  if (text->has("layer_types") && (*text)["layer_types"].is_array()) {
    const auto& types = (*text)["layer_types"].array();
    if (int64_t(types.size()) != L) throw std::runtime_error(where + ": \"layer_types\" must have one entry per layer");
    for (int64_t i = 0; i < L; i++) {
      const std::string t = types[i].is_string() ? types[i].string() : "(not a string)";
      if (t != "chunked_attention" && t != "full_attention")
        throw std::runtime_error(where + ": \"layer_types\"[" + std::to_string(i) + "] \"" + t +
                                 "\" is not supported (chunked_attention, full_attention)");
      c.chunked[i] = t == "chunked_attention";
    }
  } else {
    for (int64_t i = 0; i < L; i++) c.chunked[i] = c.use_rope[i] && c.attention_chunk_size > 0;
  }
  for (int64_t i = 0; i < L; i++)
    if (c.chunked[i] && c.attention_chunk_size <= 0)
      throw std::runtime_error(where + ": chunked_attention layers need attention_chunk_size");
  return c;
}

std::vector<float> TextConfig::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<float> inv(half);
  const float base = float(rope.theta);
  for (int64_t i = 0; i < half; i++) {
    float exponent = float(2 * i) / float(head_dim);
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  if (rope.type == "llama3") {
    const float factor = float(rope.factor), low = float(rope.low_freq_factor), high = float(rope.high_freq_factor);
    const float old_len = float(rope.original_max_position_embeddings);
    const float low_wavelen = old_len / low, high_wavelen = old_len / high;
    for (int64_t i = 0; i < half; i++) {
      float wavelen = float(2 * M_PI) / inv[i];
      float scaled = wavelen > low_wavelen ? inv[i] / factor : inv[i];
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        float smooth = (old_len / wavelen - low) / (high - low);
        scaled = (1 - smooth) * scaled / factor + smooth * scaled;
      }
      inv[i] = scaled;
    }
  }
  return inv;
}

std::string TextConfig::to_json() const {
  std::ostringstream o;
  auto list = [&](const std::vector<bool>& v, bool as_index) {
    o << "[";
    bool first = true;
    for (size_t i = 0; i < v.size(); i++) {
      if (as_index && !v[i]) continue;
      o << (first ? "" : ",") << (as_index ? int64_t(i) : int64_t(v[i]));
      first = false;
    }
    o << "]";
  };
  o << "{\"vocab_size\":" << vocab_size << ",\"hidden_size\":" << hidden_size
    << ",\"intermediate_size\":" << intermediate_size << ",\"intermediate_size_mlp\":" << intermediate_size_mlp
    << ",\"num_hidden_layers\":" << num_hidden_layers << ",\"num_attention_heads\":" << num_attention_heads
    << ",\"num_key_value_heads\":" << num_key_value_heads << ",\"head_dim\":" << head_dim
    << ",\"num_local_experts\":" << num_local_experts << ",\"num_experts_per_tok\":" << num_experts_per_tok
    << ",\"attention_chunk_size\":" << attention_chunk_size << ",\"no_rope_layers\":";
  list(use_rope, false);
  o << ",\"moe_layers\":";
  list(is_moe, true);
  o << ",\"layer_types\":[";
  for (size_t i = 0; i < chunked.size(); i++) o << (i ? "," : "") << (chunked[i] ? "\"chunked_attention\"" : "\"full_attention\"");
  o << "]}";
  return o.str();
}

VisionConfig VisionConfig::from_json(const Json& root, const std::string& where) {
  VisionConfig c;
  if (!root.is_object() || root["vision_config"].is_null()) {
    c.problem = where + " has no vision_config: the checkpoint is text-only";
    return c;
  }
  c.present = true;
  try {
    read_vision(c, root, where);
  } catch (const std::runtime_error& e) {
    c.problem = e.what();
  }
  return c;
}

std::vector<float> VisionConfig::rope_angles() const {
  const int64_t P = patches_per_side, half = head_dim / 2, per_axis = head_dim / 4;
  // In f32 as transformers computes them: theta ** (2k / (head_dim / 2)) for k < head_dim / 4.
  std::vector<float> freq(per_axis);
  for (int64_t k = 0; k < per_axis; k++) freq[k] = 1.0f / std::pow(float(rope_theta), float(2 * k) / float(half));
  std::vector<float> angles((P * P + 1) * half, 0.0f);
  for (int64_t n = 0; n < P * P; n++) {
    const int64_t column = n % P, row = n / P;  // positions count from 1
    for (int64_t k = 0; k < per_axis; k++) {
      angles[n * half + k] = float(column + 1) * freq[k];
      angles[n * half + per_axis + k] = float(row + 1) * freq[k];
    }
  }
  return angles;
}

}  // namespace l4
