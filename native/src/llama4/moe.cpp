// Llama4TextMLP and Llama4TextMoe, as in transformers' modeling_llama4.py: the router picks each token's
// top-k experts, each expert runs once over all of its tokens (so its weights are read once per call),
// and the shared expert runs on every token.
#include <cmath>
#include <numeric>

#include "../kernels/kernels.h"
#include "layers.h"

namespace l4 {

void mlp(const MlpWeights& w, const float* x, int64_t tokens, ScratchMeter& meter, float* out) {
  const int64_t inner = w.gate_proj.rows;
  std::vector<float> gate(tokens * inner), up(tokens * inner);
  meter.hold(bytes_of(gate) + bytes_of(up));
  matmul_batch({{x, tokens, w.gate_proj, false, gate.data()}, {x, tokens, w.up_proj, false, up.data()}});
  silu_mul(gate.data(), up.data(), inner, tokens, inner, gate.data());
  linear(gate.data(), tokens, w.down_proj, nullptr, out);
  meter.release(bytes_of(gate) + bytes_of(up));
}

void moe(const TextConfig& c, const MoeWeights& w, const float* h, int64_t tokens, const int8_t* expert_override,
         RouterRecord* record, ScratchMeter& meter, float* out) {
  const int64_t H = c.hidden_size, E = c.num_local_experts, I = c.intermediate_size, K = c.num_experts_per_tok;

  // Llama4Router: logits -> top-k -> sigmoid of the chosen logits (the others weigh 0).
  std::vector<float> router_logits(tokens * E);
  linear(h, tokens, w.router, nullptr, router_logits.data());
  if (record) record->logits.insert(record->logits.end(), router_logits.begin(), router_logits.end());
  std::vector<std::vector<std::pair<int64_t, float>>> routed_to(E);  // expert -> (token, score)
  std::vector<int64_t> order(E);
  std::vector<float> rank(E);
  for (int64_t n = 0; n < tokens; n++) {
    const float* lg = router_logits.data() + n * E;
    // Interventions: forced experts rank first, disabled ones last; the rest by logit.
    for (int64_t e = 0; e < E; e++)
      rank[e] = !expert_override || expert_override[e] == 0 ? lg[e] : expert_override[e] > 0 ? INFINITY : -INFINITY;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](int64_t a, int64_t b) { return rank[a] > rank[b] || (rank[a] == rank[b] && a < b); });
    for (int64_t j = 0; j < K; j++) {
      const int64_t e = order[j];
      const float score = 1.0f / (1.0f + std::exp(-lg[e]));
      routed_to[e].push_back({n, score});
      if (record) {
        record->experts.push_back(int32_t(e));
        record->scores.push_back(score);
      }
    }
  }

  // Llama4TextExperts: each expert sees its tokens pre-scaled by their router score. Rows of every
  // expert's tokens are stacked [expert][token] so all experts run as one parallel job per projection.
  std::vector<int64_t> first(E + 1, 0);  // expert e's rows are [first[e], first[e+1])
  for (int64_t e = 0; e < E; e++) first[e + 1] = first[e] + int64_t(routed_to[e].size());
  const int64_t R = first[E];
  std::vector<float> xin(R * H), gate_up(R * 2 * I), act(R * I), eout(R * H);
  const size_t expert_bytes = bytes_of(router_logits) + bytes_of(xin) + bytes_of(gate_up) + bytes_of(act) + bytes_of(eout) +
                              sizeof(float) * size_t(tokens * H);  // + `routed` below
  meter.hold(expert_bytes);
  for (int64_t e = 0; e < E; e++)
    for (int64_t j = 0; j < int64_t(routed_to[e].size()); j++) {
      const auto [n, score] = routed_to[e][j];
      float* row = xin.data() + (first[e] + j) * H;
      for (int64_t i = 0; i < H; i++) row[i] = h[n * H + i] * score;
    }
  // The shared expert (Llama4TextMLP) runs in the same two parallel jobs as the routed experts.
  const MlpWeights& shared = w.shared_expert;
  const int64_t shared_inner = shared.gate_proj.rows;
  std::vector<float> shared_gate(tokens * shared_inner), shared_up(tokens * shared_inner);
  meter.hold(bytes_of(shared_gate) + bytes_of(shared_up));
  std::vector<MatmulJob> up_jobs{{h, tokens, shared.gate_proj, false, shared_gate.data()},
                                 {h, tokens, shared.up_proj, false, shared_up.data()}};
  std::vector<MatmulJob> down_jobs{{shared_gate.data(), tokens, shared.down_proj, false, out}};
  for (int64_t e = 0; e < E; e++) {
    const int64_t n_e = first[e + 1] - first[e];
    if (n_e == 0) continue;
    up_jobs.push_back({xin.data() + first[e] * H, n_e, w.gate_up_proj.slice_rows(e * H, H), true, gate_up.data() + first[e] * 2 * I});
    down_jobs.push_back({act.data() + first[e] * I, n_e, w.down_proj.slice_rows(e * I, I), true, eout.data() + first[e] * H});
  }
  matmul_batch(up_jobs);
  silu_mul(gate_up.data(), gate_up.data() + I, 2 * I, R, I, act.data());  // gate and up side by side in each row
  silu_mul(shared_gate.data(), shared_up.data(), shared_inner, tokens, shared_inner, shared_gate.data());
  matmul_batch(down_jobs);
  meter.release(bytes_of(shared_gate) + bytes_of(shared_up));

  // Routed outputs summed in expert order, after the shared expert, as transformers adds them.
  std::vector<float> routed(tokens * H, 0.0f);
  for (int64_t e = 0; e < E; e++)
    for (int64_t j = 0; j < int64_t(routed_to[e].size()); j++) {
      const int64_t n = routed_to[e][j].first;
      const float* row = eout.data() + (first[e] + j) * H;
      for (int64_t i = 0; i < H; i++) routed[n * H + i] += row[i];
    }
  add_in_place(out, routed.data(), tokens * H);
  meter.release(expert_bytes);
}

}  // namespace l4
