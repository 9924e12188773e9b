// The Llama 4 vision tower (transformers' Llama4VisionModel) and the multimodal projector that turns
// its output into rows of the text model's hidden size.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "config.h"
#include "weights.h"

namespace l4 {

struct ImageRequest {
  int64_t tiles = 0, height = 0, width = 0;
  std::vector<float> pixel_values;  // [tiles, channels, height, width], as Llama4ImageProcessor makes them
  bool output_vision_features = false;
  bool output_hidden_states = false;
};

struct ImageResult {
  int64_t tokens_per_tile = 0;
  std::vector<float> image_features;   // [tiles * tokens_per_tile, text hidden]: multi_modal_projector output
  std::vector<float> vision_features;  // [tiles, tokens_per_tile, vision_output_dim]: Llama4VisionModel output
  std::vector<float> hidden_states;    // [layers + 1, tiles, patches + 1, hidden]: encoder input, then each layer's output
};

class VisionModel {
 public:
  VisionModel(const VisionConfig& config, VisionWeights weights);
  const VisionWeights& weights() const { return weights_; }

  // Encodes the tiles of one or more images. Throws CancelledError when `cancel` becomes true between
  // layers. One call at a time per model; concurrent calls wait.
  ImageResult encode(const ImageRequest& req, const std::atomic<bool>& cancel);

 private:
  void validate(const ImageRequest& req) const;

  VisionConfig config_;
  VisionWeights weights_;
  std::vector<float> rope_cos_, rope_sin_;  // [patches + 1, head_dim / 2]
  std::mutex busy_;
};

}  // namespace l4
