// What a traced forward/generate records about the model's insides, as plain JSON-able data:
// expert routing per MoE layer and token, selected attention probabilities, memory use. The viz/
// functions take these objects; `toJSON` / `GenerationTrace.fromJSON` round-trip them.

export interface TraceModelInfo {
  /** Where the model came from (id or directory), for titles. */
  name: string;
  num_hidden_layers: number;
  num_local_experts: number;
  num_experts_per_tok: number;
  moe_layers: number[];
  /** Per layer: "chunked_attention" (RoPE, chunked mask) or "full_attention" (NoPE, full causal mask). */
  layer_types: string[];
  attention_chunk_size: number | null;
  num_attention_heads: number;
}

export interface TraceToken {
  id: number;
  /** The token's own text (tokenizer.decode([id])), or "#id" without a tokenizer. */
  text: string;
  /** false for tokens produced by generate(). */
  is_prompt: boolean;
}

/** Routing of one MoE layer: one row per token (position) of the traced sequence. */
export interface LayerRouting {
  layer: number;
  /** [token][expert]: the router's logits before any intervention. */
  router_logits: number[][];
  /** [token][k]: experts that processed the token (after interventions), best first. */
  experts: number[][];
  /** [token][k]: their weights, sigmoid of the router logit. */
  scores: number[][];
}

/** Attention probabilities of one layer and head: [query][key], keys 0..query (row i has i+1 entries). */
export interface AttentionMap {
  layer: number;
  head: number;
  probs: number[][];
}

export interface WeightMemory {
  /** embed_tokens, attention, router, experts, shared_expert, mlp, norm, lm_head */
  module: string;
  dtype: string;
  bytes: number;
}

export interface MemoryStep {
  /** 0 = the prompt's forward, then one per generated token. */
  step: number;
  /** KV cache bytes held by each layer after this step. */
  kv_cache_bytes_by_layer: number[];
  /** Largest working memory of the forward pass (activations, scratch). */
  scratch_peak_bytes: number;
  /** Resident set size of the process after this step. */
  rss_bytes: number;
}

export interface TraceMemory {
  weights: WeightMemory[];
  steps: MemoryStep[];
}

/** Per MoE layer: experts switched off (never chosen) or forced (always chosen). */
export interface ExpertIntervention {
  layer: number;
  disable?: number[];
  force?: number[];
}

export interface GenerationTraceData {
  version: 1;
  model: TraceModelInfo;
  /** Every position of batch row 0: the prompt, then the generated tokens. */
  tokens: TraceToken[];
  routing: LayerRouting[];
  attention: AttentionMap[];
  memory: TraceMemory | null;
  interventions: ExpertIntervention[];
}
