// The Llama 4 text decoder (transformers' Llama4TextModel + lm_head), forward pass and KV cache; and,
// for a multimodal checkpoint, its vision tower (it shares the mapped checkpoint).
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
#include "layers.h"
#include "vision_model.h"
#include "weights.h"

namespace l4 {

// Keys/values of past positions. Cache positions are shared by the batch rows (left padding is
// expressed by `valid`). Full-attention layers keep every position; chunked layers keep a ring of
// attention_chunk_size slots, all a query can ever see (see KVLayer).
// A KV cache element type by its name in the SDK: "float32", "bfloat16" or "int8".
DType kv_cache_dtype(const std::string& name);

class KVCache {
 public:
  // `dtype`: F32, BF16 (half the memory) or I8 (a quarter, plus an f32 scale per head_dim elements). Keys and values
  // are rounded to it as they are computed, in the forward that makes them (see LayerKV).
  KVCache(const TextConfig& config, int64_t batch, DType dtype = DType::F32);
  DType dtype() const { return dtype_; }
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }  // positions stored so far
  const std::vector<uint8_t>& valid(int64_t row) const { return valid_[row]; }  // per position: 0 for padding
  size_t bytes() const;
  std::vector<size_t> layer_bytes() const;
  // Stores one call's keys/values ([batch, new_tokens, kv_heads, head_dim] per layer) after the past ones;
  // `valid` is the padding mask of every position, past and new.
  void append(std::vector<std::vector<uint8_t>> valid, int64_t new_tokens, const std::vector<LayerKV>& fresh);

 private:
  friend class TextModel;
  int64_t batch_, head_dim_, row_;  // row_: kv_heads * head_dim
  DType dtype_;
  int64_t length_ = 0;
  std::vector<std::vector<uint8_t>> valid_;  // [batch][position]: 0 for padding
  std::vector<KVLayer> layers_;
};

struct ForwardRequest {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> input_ids;       // [batch, seq_len]
  // [image tokens, hidden]: rows that replace, in order, the embeddings where input_ids == image_token_id
  // (batch-major, then sequence order). Empty = none: image token ids are then embedded like any token.
  std::vector<float> image_features;
  std::vector<int32_t> attention_mask;  // [batch, past + seq_len] or empty (all ones)
  std::vector<int32_t> position_ids;    // [batch, seq_len] or empty (cache positions)
  KVCache* cache = nullptr;             // updated only if the forward succeeds
  bool output_hidden_states = false;
  // Router logits (before interventions) and the experts/scores each token was routed to.
  bool output_router_logits = false;
  // Attention probabilities of these layers (all heads); empty = none.
  std::vector<int32_t> attention_layers;
  // Expert interventions, [num_hidden_layers * num_local_experts]: 0 as routed, -1 never chosen,
  // +1 always chosen (its weight stays sigmoid(router logit)). Empty = none.
  std::vector<int8_t> expert_override;
  int64_t logits_to_keep = 0;  // last N positions per row; 0 = all
  // attn_implementation "eager": softmax over a row's scores held whole (what returns probabilities); "sdpa" /
  // "flex_attention" (false): tiles of keys with an online softmax, fully masked tiles skipped.
  bool eager_attention = false;
};

struct ForwardResult {
  std::vector<float> logits;  // [batch, kept, vocab]
  int64_t kept = 0;
  std::vector<float> hidden_states;  // [layers + 1, batch, seq, hidden]
  std::vector<float> router_logits;  // [moe layers, batch * seq, experts]
  std::vector<int32_t> router_experts;  // [moe layers, batch * seq, top_k], best first
  std::vector<float> router_scores;     // [moe layers, batch * seq, top_k]
  std::vector<int32_t> moe_layers;
  std::vector<float> attentions;  // [attention_layers, batch, heads, seq, past + seq]
  size_t scratch_peak_bytes = 0;  // the largest working memory the call held at once
};

// Bytes of the loaded weights by module and by the dtype they are held in.
struct WeightStat {
  std::string module, dtype;
  size_t bytes;
};

struct LoadOptions {
  std::string dtype = "auto";  // auto, float32, bfloat16, float16, q8 or q4 (see WeightLoader)
  // FbgemmFp8Config's fields as JSON ("" for none): quantize the Linears to FP8 at load.
  std::string fbgemm_fp8;
  // "float32", "bfloat16" or "int8", what its KV caches hold by default. Keys and values are rounded to it in every
  // forward without a cache, and to the cache's dtype in one with a cache, so a cached decode equals the full
  // forward of a model loaded with that kv_dtype.
  std::string kv_dtype = "float32";
  bool use_mmap = false;  // see WeightLoader
  std::function<void(size_t done, size_t total)> layer_loaded;  // see WeightLoader::layer_loaded
};

class TextModel {
 public:
  // Loads config.json and the safetensors weights from a checkpoint directory.
  explicit TextModel(const std::string& dir, LoadOptions options = {});
  DType kv_dtype() const { return kv_dtype_; }
  const TextConfig& config() const { return config_; }
  const TextWeights& weights() const { return weights_; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }
  size_t mapped_weight_bytes() const;
  size_t converted_weight_bytes() const;
  std::vector<WeightStat> weight_stats() const;
  // What config.json says about the vision tower, and why it cannot run if it cannot.
  const VisionConfig& vision_config() const { return vision_config_; }

  // Runs the forward pass. Throws CancelledError when `cancel` becomes true between layers (the
  // cache is then left as it was). One forward at a time per model; concurrent calls wait.
  ForwardResult forward(const ForwardRequest& req, const std::atomic<bool>& cancel);
  // Runs the vision tower and the projector; throws naming the reason when the checkpoint has none that can run.
  ImageResult encode_images(const ImageRequest& req, const std::atomic<bool>& cancel);

 private:
  void validate(const ForwardRequest& req) const;

  TextConfig config_;
  DType kv_dtype_ = DType::F32;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::vector<std::unique_ptr<WeightBytes>> owned_;
  TextWeights weights_;
  VisionConfig vision_config_;
  std::unique_ptr<VisionModel> vision_;  // null unless vision_config_ is usable
  std::vector<float> inv_freq_;
  Workspace workspace_;  // used under busy_
  std::mutex busy_;
};

}  // namespace l4
