#include "quantization_config.h"

#include <cmath>
#include <regex>
#include <stdexcept>

namespace l4 {

namespace {

[[noreturn]] void unsupported(const std::string& where, const std::string& key, const std::string& what) {
  throw std::runtime_error(where + ": quantization_config." + key + " " + what);
}

std::string text(const Json& j) { return j.is_string() ? "\"" + j.string() + "\"" : j.is_number() ? std::to_string(j.number()) : "(not a string)"; }

void check_weights(const Json& w, const std::string& where, const std::string& key) {
  if (!w.is_object()) unsupported(where, key, "must be an object");
  const std::string type = w["type"].is_string() ? w["type"].string() : "int";
  const double bits = w["num_bits"].is_number() ? w["num_bits"].number() : 0;
  if (type == "int" ? bits != 4 && bits != 8 : type == "float" ? bits != 8 : true)
    unsupported(where, key, "asks for " + std::to_string(int(bits)) + "-bit " + type +
                                " weights; supported: 4- or 8-bit int, 8-bit float (FP8 e4m3)");
  if (!w["symmetric"].is_null() && !w["symmetric"].boolean())
    unsupported(where, key + ".symmetric", "is false: asymmetric weights (weight_zero_point) are not supported");
  if (w["dynamic"].is_bool() && w["dynamic"].boolean()) unsupported(where, key + ".dynamic", "is true: dynamic weight scales are not supported");
  const std::string strategy = w["strategy"].is_string() ? w["strategy"].string() : "tensor";
  if (strategy != "channel" && strategy != "group" && strategy != "tensor")
    unsupported(where, key + ".strategy", "is " + text(w["strategy"]) + "; supported: channel, group, tensor");
  if (strategy == "group") {
    const double g = w["group_size"].is_number() ? w["group_size"].number() : 0;
    if (g <= 0 || std::fmod(g, 32) != 0)
      unsupported(where, key + ".group_size", "is " + text(w["group_size"]) + "; groups must be a multiple of 32 inputs");
  }
}

// Returns whether the activations are FP8 per token (dynamic).
bool check_activations(const Json& a, const std::string& where, const std::string& key) {
  if (a.is_null()) return false;
  if (!a.is_object()) unsupported(where, key, "must be an object or null");
  if (!a["dynamic"].is_bool() || !a["dynamic"].boolean())
    unsupported(where, key + ".dynamic", "is not true: static activation scales (input_scale) are not supported");
  const std::string strategy = a["strategy"].is_string() ? a["strategy"].string() : "";
  if (strategy != "token") unsupported(where, key + ".strategy", "is " + text(a["strategy"]) + "; supported: token");
  const std::string type = a["type"].is_string() ? a["type"].string() : "int";
  if (type == "float") return true;
  // int8 per token: the integer kernels quantize activations per block of 32, finer than asked.
  if (type == "int" && a["num_bits"].is_number() && a["num_bits"].number() == 8) return false;
  unsupported(where, key, "asks for " + type + " activations; supported: FP8 or int8 per token");
}

// transformers' rule for modules_to_not_convert: a key matches the module itself, a suffix of it or a prefix,
// at module-name boundaries.
bool name_matches(const std::string& module, const std::string& key) {
  if (module == key) return true;
  if (module.size() > key.size() && module.compare(module.size() - key.size(), key.size(), key) == 0 &&
      module[module.size() - key.size() - 1] == '.')
    return true;
  if (module.rfind(key + ".", 0) == 0) return true;
  return module.find("." + key + ".") != std::string::npos;
}

}  // namespace

QuantizationConfig QuantizationConfig::from_checkpoint(const Json& root, const std::string& where) {
  QuantizationConfig c;
  const Json& q = root["quantization_config"].is_null() && root["text_config"].is_object()
                      ? root["text_config"]["quantization_config"]
                      : root["quantization_config"];
  if (q.is_null()) return c;
  if (!q.is_object()) unsupported(where, "", "must be an object");
  const std::string method = q["quant_method"].is_string() ? q["quant_method"].string() : "";
  if (method != "compressed-tensors")
    unsupported(where, "quant_method", "is " + text(q["quant_method"]) +
                                           "; supported: \"compressed-tensors\" checkpoints (FP8, int4 / int8 "
                                           "pack-quantized), or quantization at load (FbgemmFp8Config, dtype q8 / q4)");
  c.method = Method::CompressedTensors;
  auto check_format = [&](const Json& f, const std::string& key) {
    if (f.is_null()) return;
    const std::string s = f.is_string() ? f.string() : "";
    if (s != "pack-quantized" && s != "float-quantized" && s != "int-quantized" && s != "naive-quantized")
      unsupported(where, key, "is " + text(f) + "; supported: pack-quantized, float-quantized, int-quantized, naive-quantized");
  };
  check_format(q["format"], "format");
  if (!q["config_groups"].is_object() || q["config_groups"].object().empty())
    unsupported(where, "config_groups", "is missing: nothing says how the weights are quantized");
  bool first = true;
  for (const auto& [name, group] : q["config_groups"].object()) {
    const std::string key = "config_groups." + name;
    check_format(group["format"], key + ".format");
    check_weights(group["weights"], where, key + ".weights");
    const bool fp8 = check_activations(group["input_activations"], where, key + ".input_activations");
    if (!first && fp8 != c.fp8_dynamic_activations)
      unsupported(where, "config_groups", "mixes activation schemes across groups; not supported");
    c.fp8_dynamic_activations = fp8;
    first = false;
  }
  for (const char* key : {"transform_config", "sparsity_config"}) {
    const Json& t = q[key];
    if (t.is_object() && !t.object().empty() && !(t["format"].is_string() && t["format"].string() == "dense"))
      unsupported(where, key, "is set: transformed or sparse weights are not supported");
  }
  if (q["ignore"].is_array())
    for (const Json& entry : q["ignore"].array()) {
      if (!entry.is_string()) unsupported(where, "ignore", "must be a list of module names");
      c.ignore.push_back(entry.string());
    }
  return c;
}

QuantizationConfig QuantizationConfig::fbgemm_fp8(const Json& options) {
  const std::string where = "FbgemmFp8Config";
  QuantizationConfig c;
  c.method = Method::FbgemmFp8;
  c.fp8_dynamic_activations = true;
  const Json& ub = options["activation_scale_ub"];
  if (!ub.is_null()) {
    if (!ub.is_number() || !(ub.number() > 0) || !std::isfinite(ub.number()))
      throw std::runtime_error(where + ": activation_scale_ub must be a positive number, got " + text(ub));
    c.activation_scale_ub = ub.number();
  }
  const Json& skip = options["modules_to_not_convert"];
  if (!skip.is_null()) {
    if (!skip.is_array()) throw std::runtime_error(where + ": modules_to_not_convert must be a list of module names");
    for (const Json& m : skip.array()) {
      if (!m.is_string()) throw std::runtime_error(where + ": modules_to_not_convert must be a list of module names");
      c.modules_to_not_convert.push_back(m.string());
    }
  } else {
    c.modules_to_not_convert = {"lm_head"};  // transformers' default: the output embeddings stay
  }
  return c;
}

bool QuantizationConfig::converts(const std::string& module) const {
  for (const std::string& key : modules_to_not_convert)
    if (name_matches(module, key)) return false;
  return true;
}

bool QuantizationConfig::ignores(const std::string& module) const {
  for (const std::string& entry : ignore) {
    if (entry.rfind("re:", 0) == 0) {
      if (std::regex_search(module, std::regex("^(?:" + entry.substr(3) + ")"))) return true;
    } else if (entry == module) {
      return true;
    }
  }
  return false;
}

}  // namespace l4
