#include "save.h"

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>

#include "../kernels/quantized.h"

namespace l4 {

namespace {

struct OutTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // a checkpoint tensor, as stored...
  std::vector<uint8_t> bytes;     // ...or one made here
  size_t stored_size = 0;         // of `data`
  size_t size() const { return data ? stored_size : bytes.size(); }
};

template <class T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::string json_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); i++) s += (i ? ", \"" : "\"") + names[i] + "\"";
  return s + "]";
}

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// int4 / int8 as compressed-tensors packs them: value k of a row in bits [k b, (k + 1) b) of little-endian int32
// words, stored as q + 2^(b - 1); one f16 scale per group of 32 inputs.
void add_packed(std::map<std::string, OutTensor>& out, const std::string& module, const Matrix& w) {
  const int bits = w.dtype == DType::Q4 ? 4 : 8;
  const int64_t N = w.rows, K = w.cols;
  if (K % kQuantBlock)
    throw std::runtime_error("save_pretrained: " + module + " has " + std::to_string(K) +
                             " inputs; compressed-tensors groups of 32 need a multiple of 32");
  const int64_t words_per_row = K * bits / 32, blocks = K / kQuantBlock;
  std::vector<uint32_t> words(size_t(N * words_per_row), 0);
  std::vector<uint16_t> scales(size_t(N * blocks));
  std::vector<int8_t> q(K);
  for (int64_t n = 0; n < N; n++) {
    unpack_row(w.dtype, static_cast<const uint8_t*>(w.data), w.scales, K, n, q.data(), scales.data() + n * blocks);
    for (int64_t k = 0; k < K; k++) {
      const uint32_t u = uint32_t(q[k] + (1 << (bits - 1)));
      words[n * words_per_row + k * bits / 32] |= u << (k * bits % 32);
    }
  }
  out[module + ".weight_packed"] = {"I32", {N, words_per_row}, nullptr, as_bytes(words)};
  out[module + ".weight_scale"] = {"F16", {N, blocks}, nullptr, as_bytes(scales)};
  out[module + ".weight_shape"] = {"I64", {2}, nullptr, as_bytes(std::vector<int64_t>{N, K})};
}

void add_fp8(std::map<std::string, OutTensor>& out, const std::string& module, const Matrix& w) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<uint8_t> values(size_t(N * K));
  for (int64_t n = 0; n < N; n++) std::memcpy(values.data() + n * K, static_cast<const uint8_t*>(w.data) + n * w.ld(), size_t(K));
  out[module + ".weight"] = {"F8_E4M3", {N, K}, nullptr, std::move(values)};
  out[module + ".weight_scale"] = {"F32", {N, 1}, nullptr, as_bytes(std::vector<float>(w.row_scales, w.row_scales + N))};
}

}  // namespace

std::string save_compressed_tensors(const TextModel& model, const std::string& path) {
  const TextWeights& w = model.weights();
  if (w.quantized.empty())
    throw std::runtime_error("save_pretrained: the model holds no quantized weights (load it with dtype \"q8\" / \"q4\" or "
                             "FbgemmFp8Config to save a quantized checkpoint)");
  std::map<std::string, OutTensor> out;
  std::set<std::string> replaced;
  std::map<std::string, std::vector<std::string>> groups;  // kind -> modules
  bool fp8_activations = false;
  for (const QuantizedModule& m : w.quantized) {
    replaced.insert(m.replaces.begin(), m.replaces.end());
    if (m.weight.dtype == DType::F8_E4M3) {
      add_fp8(out, m.module, m.weight);
      groups["fp8"].push_back(m.module);
      fp8_activations = fp8_activations || m.weight.fp8_activations != Matrix::Fp8Activations::None;
    } else {
      add_packed(out, m.module, m.weight);
      groups[m.weight.dtype == DType::Q4 ? "int4" : "int8"].push_back(m.module);
    }
  }
  for (const auto& [name, t] : model.checkpoint().tensors())
    if (!replaced.count(name) && !out.count(name)) {
      OutTensor o{dtype_name(t.dtype), t.shape, t.data, {}};
      o.stored_size = t.nbytes;
      out[name] = std::move(o);
    }

  // Header, padded with spaces to a multiple of 8 bytes as safetensors writes it; tensors in name order.
  std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
  size_t offset = 0;
  for (const auto& [name, t] : out) {
    header += ", \"" + name + "\": {\"dtype\": \"" + t.dtype + "\", \"shape\": " + shape_json(t.shape) +
              ", \"data_offsets\": [" + std::to_string(offset) + ", " + std::to_string(offset + t.size()) + "]}";
    offset += t.size();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("save_pretrained: cannot write " + path);
  const uint64_t header_size = header.size();
  f.write(reinterpret_cast<const char*>(&header_size), 8);
  f.write(header.data(), std::streamsize(header.size()));
  for (const auto& [name, t] : out)
    f.write(reinterpret_cast<const char*>(t.data ? t.data : t.bytes.data()), std::streamsize(t.size()));
  f.close();
  if (!f) throw std::runtime_error("save_pretrained: writing " + path + " failed (disk full?)");

  std::string config = "{\"quant_method\": \"compressed-tensors\", \"quantization_status\": \"compressed\", \"format\": \"" +
                       std::string(groups.size() > 1 ? "mixed-precision" : groups.count("fp8") ? "float-quantized" : "pack-quantized") +
                       "\", \"ignore\": [], \"kv_cache_scheme\": null, \"sparsity_config\": {}, \"config_groups\": {";
  int index = 0;
  for (const auto& [kind, modules] : groups) {
    const std::string weights =
        kind == "fp8" ? "{\"num_bits\": 8, \"type\": \"float\", \"symmetric\": true, \"strategy\": \"channel\", \"dynamic\": false}"
                      : "{\"num_bits\": " + std::string(kind == "int4" ? "4" : "8") +
                            ", \"type\": \"int\", \"symmetric\": true, \"strategy\": \"group\", \"group_size\": 32, \"dynamic\": false}";
    const std::string activations = kind == "fp8" && fp8_activations
        ? "{\"num_bits\": 8, \"type\": \"float\", \"symmetric\": true, \"strategy\": \"token\", \"dynamic\": true}"
        : "null";
    config += std::string(index ? ", " : "") + "\"group_" + std::to_string(index) + "\": {\"targets\": " + json_list(modules) +
              ", \"weights\": " + weights + ", \"input_activations\": " + activations + ", \"output_activations\": null, \"format\": \"" +
              (kind == "fp8" ? "float-quantized" : "pack-quantized") + "\"}";
    index++;
  }
  return config + "}}";
}

}  // namespace l4
