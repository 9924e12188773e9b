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

export interface TraceOptions {
  /** Layers whose attention probabilities to record, all heads (needs attn_implementation "eager"). */
  attention_layers?: number[];
  /** Record memory per step (default true). */
  memory?: boolean;
}

/** One forward call's share of a trace: batch row 0's new positions. */
export interface TraceStep {
  tokens: TraceToken[];
  /** Per MoE layer, in model.moe_layers order: rows for the new positions. */
  routing: { layer: number; router_logits: number[][]; experts: number[][]; scores: number[][] }[];
  /** Per traced layer and head: rows (queries) for the new positions, keys 0..position. */
  attention: AttentionMap[];
  memory?: Omit<MemoryStep, "step">;
}

/**
 * The record of a traced generate() (or model.trace()) call: prompt and generated tokens with
 * their routing at every MoE layer, and optionally attention maps and memory. Plain data plus a
 * few derived views; JSON round-trips through toJSON / fromJSON.
 */
export class GenerationTrace implements GenerationTraceData {
  version = 1 as const;
  model: TraceModelInfo;
  tokens: TraceToken[] = [];
  routing: LayerRouting[];
  attention: AttentionMap[] = [];
  memory: TraceMemory | null;
  interventions: ExpertIntervention[];

  constructor(model: TraceModelInfo, options: { weights?: WeightMemory[]; interventions?: ExpertIntervention[] } = {}) {
    this.model = model;
    this.routing = model.moe_layers.map((layer) => ({ layer, router_logits: [], experts: [], scores: [] }));
    this.memory = options.weights ? { weights: options.weights, steps: [] } : null;
    this.interventions = options.interventions ?? [];
  }

  /** Adds one forward call's records. */
  append(step: TraceStep): void {
    pushAll(this.tokens, step.tokens);
    for (const r of step.routing) {
      const target = this.routing.find((t) => t.layer === r.layer);
      if (!target) throw new Error(`trace: layer ${r.layer} is not an MoE layer of this model`);
      pushAll(target.router_logits, r.router_logits);
      pushAll(target.experts, r.experts);
      pushAll(target.scores, r.scores);
    }
    for (const a of step.attention) {
      const target = this.attention.find((t) => t.layer === a.layer && t.head === a.head);
      if (target) pushAll(target.probs, a.probs);
      else this.attention.push({ layer: a.layer, head: a.head, probs: a.probs.slice() });
    }
    if (step.memory && this.memory) this.memory.steps.push({ step: this.memory.steps.length, ...step.memory });
  }

  /** Routing of one MoE layer. */
  layer(layer: number): LayerRouting {
    const r = this.routing.find((t) => t.layer === layer);
    if (!r) throw new Error(`trace: layer ${layer} is not an MoE layer (MoE layers: ${this.model.moe_layers.join(", ")})`);
    return r;
  }

  /**
   * Per-token routing entropy in nats: the entropy of softmax(router_logits) over the experts, at
   * one MoE layer or averaged over all of them. 0 = the router is certain; ln(E) = uniform.
   */
  entropy(layer?: number): number[] {
    const layers = layer === undefined ? this.routing : [this.layer(layer)];
    const n = this.tokens.length;
    const out = new Array<number>(n).fill(0);
    for (const r of layers) {
      r.router_logits.forEach((row, t) => {
        const max = Math.max(...row);
        const exps = row.map((v) => Math.exp(v - max));
        const sum = exps.reduce((a, b) => a + b, 0);
        out[t] += -exps.reduce((h, e) => (e > 0 ? h + (e / sum) * Math.log(e / sum) : h), 0) / layers.length;
      });
    }
    return out;
  }

  toJSON(): GenerationTraceData {
    return {
      version: this.version,
      model: this.model,
      tokens: this.tokens,
      routing: this.routing,
      attention: this.attention,
      memory: this.memory,
      interventions: this.interventions,
    };
  }

  /** Loads a trace saved with JSON.stringify(trace), checking its shape. */
  static fromJSON(json: string | GenerationTraceData): GenerationTrace {
    const data = (typeof json === "string" ? JSON.parse(json) : json) as GenerationTraceData;
    if (!data || data.version !== 1) throw new Error(`GenerationTrace.fromJSON: unsupported trace version ${String(data?.version)}`);
    for (const key of ["model", "tokens", "routing", "attention", "interventions"] as const) {
      if (data[key] === undefined) throw new Error(`GenerationTrace.fromJSON: missing "${key}"`);
    }
    const trace = new GenerationTrace(data.model, { interventions: data.interventions });
    trace.tokens = data.tokens;
    trace.routing = data.routing;
    trace.attention = data.attention;
    trace.memory = data.memory ?? null;
    for (const r of trace.routing) {
      if (r.router_logits.length !== trace.tokens.length || r.experts.length !== trace.tokens.length) {
        throw new Error(`GenerationTrace.fromJSON: layer ${r.layer} has ${r.experts.length} routing rows for ${trace.tokens.length} tokens`);
      }
    }
    return trace;
  }
}

/** What stepFromOutput reads of a forward output (Llama4CausalLMOutput). */
type Rows = { data: Float32Array | Int32Array; dims: number[] };
interface TracedOutput {
  router_logits?: Rows[];
  router_experts?: Rows[];
  router_scores?: Rows[];
  moe_layers?: number[];
  attentions?: Rows[];
  attention_layers?: number[];
  scratch_peak_bytes: number;
}

/**
 * Batch row 0 of one forward output as a TraceStep: `ids` are the positions fed (past + i is the
 * position of ids[i]), rows of a [batch * seq, ...] tensor for row 0 are the first seq rows.
 */
export function stepFromOutput(
  out: TracedOutput,
  ids: number[],
  past: number,
  isPrompt: boolean,
  decode: ((ids: number[]) => string) | undefined,
  memory?: Omit<MemoryStep, "step">,
): TraceStep {
  const T = ids.length;
  const rows = (t: Rows) => Array.from({ length: T }, (_, i) => Array.from(t.data.subarray(i * t.dims[1], (i + 1) * t.dims[1])));
  const step: TraceStep = {
    tokens: ids.map((id) => ({ id, text: decode ? decode([id]) : `#${id}`, is_prompt: isPrompt })),
    routing: (out.moe_layers ?? []).map((layer, i) => ({
      layer,
      router_logits: rows(out.router_logits![i]),
      experts: rows(out.router_experts![i]),
      scores: rows(out.router_scores![i]),
    })),
    attention: [],
    memory,
  };
  (out.attention_layers ?? []).forEach((layer, i) => {
    const [, heads, seq, kv] = out.attentions![i].dims;
    const data = out.attentions![i].data;
    for (let h = 0; h < heads; h++) {
      const probs = Array.from({ length: seq }, (_, t) => {
        const start = (h * seq + t) * kv;
        return Array.from(data.subarray(start, start + past + t + 1));
      });
      step.attention.push({ layer, head: h, probs });
    }
  });
  return step;
}

/** push(...from) without spreading: a long prompt's records would pass more arguments than the stack holds. */
function pushAll<T>(to: T[], from: readonly T[]): void {
  for (const x of from) to.push(x);
}
