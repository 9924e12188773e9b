// Reader for Hugging Face safetensors checkpoints: mmapped, zero-copy, strictly validated.
// A checkpoint is one model.safetensors or shards listed in model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace l4 {

struct TensorInfo {
  std::string name;
  std::string file;  // the file holding it, for error messages
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;  // into the mapping
  size_t nbytes;
  int64_t numel() const;
  std::string shape_str() const;
};

// One mapped .safetensors file. The mapping lives as long as the object.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  size_t file_size() const { return size_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a checkpoint directory, across shards.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Throws "missing tensor NAME in DIR" when absent.
  const TensorInfo& get(const std::string& name) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& dir() const { return dir_; }
  // Drops the tensor's pages from this process's memory once a converted copy replaces it (the whole pages
  // it covers; they are read back from the file if it is used again).
  void release(const std::string& name) const;
  // The same for `bytes` bytes of mapped data from `data` (part of a tensor).
  static void release(const void* data, size_t bytes);

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
};

// The one reader for the JSON files next to a checkpoint (config.json, model.safetensors.index.json): a regular
// file of at most `max_bytes`, else an error naming it.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(64) << 20);

}  // namespace l4
