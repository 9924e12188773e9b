// The Llama 4 text decoder (transformers' Llama4TextModel + lm_head), forward pass and KV cache.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../safetensors.h"
#include "config.h"
#include "weights.h"

namespace l4 {

struct CancelledError : std::runtime_error {
  CancelledError() : std::runtime_error("cancelled") {}
};

// Keys/values of past positions. Cache positions are shared by the batch rows (left padding is
// expressed by `valid`). Full-attention layers keep every position; chunked layers keep a ring of
// attention_chunk_size slots, all a query can ever see. Layout per layer: [slot][batch][kv_head][head_dim].
class KVCache {
 public:
  KVCache(const TextConfig& config, int64_t batch);
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }  // positions stored so far
  size_t bytes() const;

 private:
  friend class TextModel;
  struct Layer {
    std::vector<float> k, v;
    int64_t ring = 0;  // slots for a chunked layer, 0 = grows with the sequence
  };
  int64_t batch_;
  int64_t length_ = 0;
  std::vector<std::vector<uint8_t>> valid_;  // [batch][position]: 0 for padding
  std::vector<Layer> layers_;
};

struct ForwardRequest {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> input_ids;       // [batch, seq_len]
  std::vector<int32_t> attention_mask;  // [batch, past + seq_len] or empty (all ones)
  std::vector<int32_t> position_ids;    // [batch, seq_len] or empty (cache positions)
  KVCache* cache = nullptr;             // updated only if the forward succeeds
  bool output_hidden_states = false;
  bool output_router_logits = false;
  int64_t logits_to_keep = 0;  // last N positions per row; 0 = all
};

struct ForwardResult {
  std::vector<float> logits;  // [batch, kept, vocab]
  int64_t kept = 0;
  std::vector<float> hidden_states;  // [layers + 1, batch, seq, hidden]
  std::vector<float> router_logits;  // [moe layers, batch * seq, experts]
  std::vector<int32_t> moe_layers;
};

class TextModel {
 public:
  // Loads config.json and the safetensors weights from a checkpoint directory.
  TextModel(const std::string& dir, const std::string& dtype);
  const TextConfig& config() const { return config_; }
  const TextWeights& weights() const { return weights_; }
  size_t mapped_weight_bytes() const;

  // Runs the forward pass. Throws CancelledError when `cancel` becomes true between layers (the
  // cache is then left as it was). One forward at a time per model; concurrent calls wait.
  ForwardResult forward(const ForwardRequest& req, const std::atomic<bool>& cancel);

 private:
  void validate(const ForwardRequest& req) const;

  TextConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_;
  TextWeights weights_;
  std::vector<float> inv_freq_;
  std::mutex busy_;
};

}  // namespace l4
