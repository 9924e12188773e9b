// The parts of a Llama 4 decoder layer (transformers' Llama4TextAttention, Llama4TextMLP, Llama4TextMoe)
// and the per-call state they share. text_model.cpp chains them; attention.cpp and moe.cpp implement them.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "config.h"
#include "weights.h"

namespace l4 {

// Shapes and masks shared by every layer of one forward call.
// Thrown when a forward call is cancelled (checked between layers, and between attention work items).
struct CancelledError : std::runtime_error {
  CancelledError() : std::runtime_error("cancelled") {}
};

struct Step {
  int64_t B, T, P, N;                          // batch, new tokens, past length, B*T
  std::vector<std::vector<uint8_t>> valid;     // [B][P+T] key positions that are not padding
  std::vector<int64_t> left_padding;           // [B] leading padding positions (chunk boundaries shift by it)
  std::vector<int32_t> positions;              // [N] RoPE positions
  bool eager_attention = false;                // see ForwardRequest
  DType kv_dtype = DType::F32;                 // the KV cache's element type: keys and values are rounded to it
                                               // (F32, BF16, or I8 with a scale per row of head_dim)
  const std::atomic<bool>* cancel = nullptr;   // checked between attention work items too: a long prompt's layer
                                               // can take a minute
};

// Keys and values one layer has cached, in pages of kPageSlots positions: a page is laid out
// [batch][kv_head][slot in page][head_dim], so one head's keys are contiguous within a page and attention
// reads them in memory order (row-interleaved heads a row stride apart defeat the hardware prefetchers,
// which made decode's attention 5x slower when the weights had pushed the cache out to memory). A
// chunked layer keeps a ring of `ring` slots, all a query can ever see; a full-attention layer (ring 0)
// one slot per position. Position p lives in slot (ring ? p % ring : p).
struct KVLayer {
  static constexpr int64_t kPageSlots = 64;
  // One page: kPageSlots slots of every (batch row, kv head), laid out [batch][kv_head][slot][head_dim].
  struct Page {
    std::vector<uint8_t> k, v;              // dtype elements
    std::vector<float> k_scales, v_scales;  // I8 only: one per row of head_dim elements; an element is code x scale
  };
  DType dtype = DType::F32;  // F32, BF16 or I8
  // Allocated one at a time as positions arrive: a growing cache never copies (nor holds twice) what it has.
  std::vector<Page> pages;
  int64_t ring = 0;
  int64_t slots = 0;  // slots holding a position
  // The head_dim-element row of (slot, batch row, kv head) within its page, pages[slot / kPageSlots].
  static int64_t row_in_page(int64_t slot, int64_t b, int64_t h, int64_t kv_heads) {
    return (b * kv_heads + h) * kPageSlots + slot % kPageSlots;
  }
};

// Tracks the bytes of working buffers held at once during a forward call, and their peak.
class ScratchMeter {
 public:
  void hold(size_t bytes) { peak_ = std::max(peak_, current_ += bytes); }
  void release(size_t bytes) { current_ -= bytes; }
  size_t peak() const { return peak_; }

 private:
  size_t current_ = 0, peak_ = 0;
};

template <class T>
size_t bytes_of(const std::vector<T>& v) { return v.size() * sizeof(T); }

// Working buffers of the layers, kept from layer to layer and call to call: a fresh allocation per layer
// would be zeroed and page-faulted in every time (a tenth of a prefill). One per model; its contents are
// unspecified when handed out.
class Workspace {
 public:
  enum Slot {
    kQuery,
    kContext,
    kRouterLogits,
    kGate,
    kUp,
    kSlots,
    // The routed experts run after attention is done with its buffers, so they take those: a prefill holds half
    // the working memory it would with a buffer each (20 MB instead of 40 MB for 512 tokens of the MoE bench model).
    kExpertInput = kQuery,     // then the experts' outputs, once the gate/up products have read it
    kExpertGateUp = kContext,  // then their activations (in place), then the routed sum
  };
  float* get(Slot slot, size_t floats) {
    if (capacity_[slot] < floats) {
      buffers_[slot].reset(new float[floats]);
      capacity_[slot] = floats;
    }
    return buffers_[slot].get();
  }
  // Frees buffers above `bytes` (a long prompt's), so they are not held while decoding.
  void trim(size_t bytes) {
    for (int s = 0; s < kSlots; s++)
      if (capacity_[s] * sizeof(float) > bytes) {
        buffers_[s].reset();
        capacity_[s] = 0;
      }
  }

 private:
  std::unique_ptr<float[]> buffers_[kSlots];
  size_t capacity_[kSlots] = {};
};

// Llama4TextAttention of layer `layer` on the normed hidden states h [N, H]: writes this call's keys and
// values to k, v ([N, kv_heads, head_dim], before any cache), the o_proj output to out [N, H], and, when
// probs is not null, the attention probabilities [B, heads, T, P+T].
// One call's keys and values of one layer, [batch, new tokens, kv_heads, head_dim], as the KV cache will hold them:
// attention uses exactly these values, so a cached decode equals the full forward. For an I8 cache, `k` / `v` are the
// codes times their row's scale, and the codes and scales are kept for the cache to store as they are.
struct LayerKV {
  std::vector<float> k, v;
  std::vector<int8_t> k_codes, v_codes;  // I8 only
  std::vector<float> k_scales, v_scales;  // I8 only: per row of head_dim
  size_t bytes() const { return bytes_of(k) + bytes_of(v) + bytes_of(k_codes) + bytes_of(v_codes) + bytes_of(k_scales) + bytes_of(v_scales); }
};

void attention(const TextConfig& c, int64_t layer, const AttentionWeights& w, const Step& s, const KVLayer* cached,
               const std::vector<float>& inv_freq, const float* h, LayerKV& fresh, float* probs, Workspace& work,
               ScratchMeter& meter, float* out);

// Llama4TextMLP: down_proj(silu(gate_proj(x)) * up_proj(x)), x [tokens, H] -> out [tokens, H].
void mlp(const MlpWeights& w, const float* x, int64_t tokens, Workspace& work, ScratchMeter& meter, float* out);

// What the router did, appended per MoE layer when asked for: logits [tokens, E] (before interventions),
// chosen experts and their scores [tokens, top_k], best first.
struct RouterRecord {
  std::vector<float> logits;
  std::vector<int32_t> experts;
  std::vector<float> scores;
};

// Llama4TextMoe: route each token to its top-k experts (sigmoid of the chosen logits weighs the expert's input),
// run each expert once over its tokens, add the shared expert. expert_override: [E] of 0 (as routed),
// -1 (never chosen), +1 (always chosen), or null. record may be null.
void moe(const TextConfig& c, const MoeWeights& w, const float* h, int64_t tokens, const int8_t* expert_override,
         RouterRecord* record, Workspace& work, ScratchMeter& meter, float* out);

}  // namespace l4
