// Llama4TextMLP and Llama4TextMoe, as in transformers' modeling_llama4.py: the router picks each token's
// top-k experts, each expert runs once over all of its tokens (so its weights are read once per call),
// and the shared expert runs on every token.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "../kernels/kernels.h"
#include "layers.h"

namespace l4 {

void mlp(const MlpWeights& w, const float* x, int64_t tokens, Workspace& work, ScratchMeter& meter, float* out) {
  const int64_t inner = w.gate_proj.rows;
  float* gate = work.get(Workspace::kGate, tokens * inner);
  float* up = work.get(Workspace::kUp, tokens * inner);
  const size_t bytes = 2 * sizeof(float) * size_t(tokens * inner);
  meter.hold(bytes);
  matmul_batch({{x, tokens, w.gate_proj, gate}, {x, tokens, w.up_proj, up}});
  silu_mul(gate, up, inner, tokens, inner, gate);
  linear(gate, tokens, w.down_proj, nullptr, out);
  meter.release(bytes);
}

void moe(const TextConfig& c, const MoeWeights& w, const float* h, int64_t tokens, const int8_t* expert_override,
         RouterRecord* record, Workspace& work, ScratchMeter& meter, float* out) {
  const int64_t H = c.hidden_size, E = c.num_local_experts, I = c.intermediate_size, K = c.num_experts_per_tok;

  // Llama4Router: logits -> top-k -> sigmoid of the chosen logits (the others weigh 0).
  float* router_logits = work.get(Workspace::kRouterLogits, tokens * E);
  linear(h, tokens, w.router, nullptr, router_logits);
  if (record) record->logits.insert(record->logits.end(), router_logits, router_logits + tokens * E);
  std::vector<std::vector<std::pair<int64_t, float>>> routed_to(E);  // expert -> (token, score)
  std::vector<int64_t> order(E);
  std::vector<float> rank(E);
  for (int64_t n = 0; n < tokens; n++) {
    const float* lg = router_logits + n * E;
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
  float* xin = work.get(Workspace::kExpertInput, R * H);
  float* gate = work.get(Workspace::kExpertGateUp, std::max(R * 2 * I, tokens * H));
  float* up = gate + R * I;
  float* act = gate;     // silu(gate) * up, in place
  float* eout = xin;     // the inputs are read by the gate/up products before the down products write
  float* routed = gate;  // the activations are read by the down products before the sum
  const size_t expert_bytes = sizeof(float) * size_t(tokens * E + R * H + std::max(R * 2 * I, tokens * H));
  meter.hold(expert_bytes);
  for (int64_t e = 0; e < E; e++)
    for (int64_t j = 0; j < int64_t(routed_to[e].size()); j++) {
      const auto [n, score] = routed_to[e][j];
      float* row = xin + (first[e] + j) * H;
      for (int64_t i = 0; i < H; i++) row[i] = h[n * H + i] * score;
    }
  // The shared expert (Llama4TextMLP) runs in the same two parallel jobs as the routed experts.
  const MlpWeights& shared = w.shared_expert;
  const int64_t shared_inner = shared.gate_proj.rows;
  float* shared_gate = work.get(Workspace::kGate, tokens * shared_inner);
  float* shared_up = work.get(Workspace::kUp, tokens * shared_inner);
  const size_t shared_bytes = 2 * sizeof(float) * size_t(tokens * shared_inner);
  meter.hold(shared_bytes);
  std::vector<MatmulJob> up_jobs{{h, tokens, shared.gate_proj, shared_gate}, {h, tokens, shared.up_proj, shared_up}};
  std::vector<MatmulJob> down_jobs{{shared_gate, tokens, shared.down_proj, out}};
  for (int64_t e = 0; e < E; e++) {
    const int64_t n_e = first[e + 1] - first[e];
    if (n_e == 0) continue;
    up_jobs.push_back({xin + first[e] * H, n_e, w.gate_proj[e], gate + first[e] * I});
    up_jobs.push_back({xin + first[e] * H, n_e, w.up_proj[e], up + first[e] * I});
    down_jobs.push_back({act + first[e] * I, n_e, w.down_proj[e], eout + first[e] * H});
  }
  matmul_batch(up_jobs);
  silu_mul(gate, up, I, R, I, act);
  silu_mul(shared_gate, shared_up, shared_inner, tokens, shared_inner, shared_gate);
  matmul_batch(down_jobs);
  meter.release(shared_bytes);

  // Routed outputs summed in expert order, after the shared expert, as transformers adds them.
  std::fill(routed, routed + tokens * H, 0.0f);
  for (int64_t e = 0; e < E; e++)
    for (int64_t j = 0; j < int64_t(routed_to[e].size()); j++) {
      const int64_t n = routed_to[e][j].first;
      const float* row = eout + (first[e] + j) * H;
      for (int64_t i = 0; i < H; i++) routed[n * H + i] += row[i];
    }
  add_in_place(out, routed, tokens * H);
  meter.release(expert_bytes);
}

}  // namespace l4
