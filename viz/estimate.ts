// Parameter counts, weight bytes and KV-cache bytes of a Llama 4 checkpoint from its config.json
// alone (no weights read), and a chart of the estimates. Counts follow the tensors transformers'
// Llama4ForConditionalGeneration / Llama4ForCausalLM create, so on a real checkpoint the total
// equals the sum of the safetensors tensor sizes. Bytes are what llama4-ts holds in each weight
// format (bf16, FP8, dtype "q8" / "q4"); test/viz.test.ts checks them against weight_memory().
import { VEGA_LITE_SCHEMA, VegaLiteSpec } from "./common";

/**
 * Weight formats llama4-ts holds: "bf16" (as checkpoints store them), "fp8" (FbgemmFp8Config or a
 * compressed-tensors FP8 checkpoint), "int8" (dtype "q8") and "int4" (dtype "q4" or an int4 checkpoint).
 */
export type WeightDType = "bf16" | "fp8" | "int8" | "int4";
export const WEIGHT_DTYPES: WeightDType[] = ["bf16", "fp8", "int8", "int4"];
/** How each format is asked for in from_pretrained. */
export const WEIGHT_DTYPE_SOURCES: Record<WeightDType, string> = {
  bf16: "as stored",
  fp8: "FbgemmFp8Config / FP8 checkpoint",
  int8: 'dtype "q8"',
  int4: 'dtype "q4" / int4 checkpoint',
};

export type KVDType = "fp32" | "float32" | "bf16" | "bfloat16" | "fp16" | "float16" | "fp8" | "int8";
const KV_BYTES: Record<KVDType, number> = { fp32: 4, float32: 4, bf16: 2, bfloat16: 2, fp16: 2, float16: 2, fp8: 1, int8: 1 };

/** Inputs per f16 scale of the int8 / int4 blocks (dtype "q8" / "q4", as llama.cpp's Q8_0 / Q4_0). */
export const QUANT_BLOCK = 32;
/** @deprecated The int4 group is now the block of `QUANT_BLOCK` inputs. */
export const INT4_GROUP = QUANT_BLOCK;
/** Bytes of the f16 scale of one block. */
const BLOCK_SCALE_BYTES = 2;
/** Bytes of the f32 scale of one FP8 output row. */
const FP8_ROW_SCALE_BYTES = 4;

const LINEARS = "the text model's Linear layers (attention q/k/v/o, routed experts, shared experts, dense MLPs)";

export const QUANTIZATION_ASSUMPTIONS = [
  "bf16: 2 bytes per parameter, everything (what the checkpoints store).",
  `fp8 (FbgemmFp8Config, or a compressed-tensors FP8 checkpoint): float8 e4m3, 1 byte per weight of ${LINEARS}, ` +
    `plus one f32 scale (${FP8_ROW_SCALE_BYTES} bytes) per output row; lm_head, embed_tokens, routers, norms, ` +
    "the vision tower and the projector stay bf16.",
  `int8 (dtype "q8"): 1 byte per weight of the same Linear layers plus one f16 scale (${BLOCK_SCALE_BYTES} bytes) per block of ` +
    `${QUANT_BLOCK} inputs (${1 + BLOCK_SCALE_BYTES / QUANT_BLOCK} bytes per weight); an untied lm_head too; ` +
    "embed_tokens (and a tied lm_head with it), routers, norms, the vision tower and the projector stay bf16.",
  `int4 (dtype "q4", or an int4 compressed-tensors checkpoint, repacked into the same blocks): 0.5 byte per weight of the same ` +
    `Linear layers plus one f16 scale per block of ${QUANT_BLOCK} inputs (${0.5 + BLOCK_SCALE_BYTES / QUANT_BLOCK} bytes per weight); ` +
    `an untied lm_head at int8 (${1 + BLOCK_SCALE_BYTES / QUANT_BLOCK} bytes per weight; a checkpoint whose recipe left lm_head ` +
    "unquantized keeps it bf16); the rest stays bf16 as for int8.",
  `Padding is ignored: the engine pads int8 / int4 rows to groups of 16 and inputs to blocks of ${QUANT_BLOCK}, ` +
    "which are whole for real Llama 4 sizes; it also holds norm weights and the vision tower's biases, norms and " +
    "embeddings widened to f32 (a few MB for Scout), not counted here.",
];

/**
 * A group of tensors of one module. `linear` marks the text model's Linear layers, which every quantized
 * format converts; `lm_head` the untied output projection, int8 in the int8 and int4 formats. Everything
 * else stays bf16.
 */
interface Part {
  module: string;
  /** Parameters in the tensors. */
  params: number;
  /** Parameters used for one text token (routed experts: only the chosen ones). */
  active: number;
  /** Quantized tensors: output rows per matrix and how many such matrices (FP8 holds one scale per output row). */
  quant?: { kind: "linear" | "lm_head"; rows: number; count: number };
}

export interface ModuleEstimate {
  module: string;
  params: number;
  active: number;
  bytes: Record<WeightDType, number>;
}

export interface KVCacheEstimate {
  context_length: number;
  batch_size: number;
  dtype: KVDType;
  bytes_per_element: number;
  /** Per token and layer: 2 (K and V) x kv_heads x head_dim x bytes per element. */
  bytes_per_token_per_layer: number;
  chunk_size: number | null;
  chunked_layers: number;
  full_layers: number;
  /** Positions a chunked layer holds: min(context_length, attention_chunk_size). */
  chunked_positions: number;
  bytes: number;
}

export interface MemoryEstimate {
  name: string;
  params: { total: number; active: number; text: number; vision: number };
  modules: ModuleEstimate[];
  weights_bytes: Record<WeightDType, number>;
  kv_cache: KVCacheEstimate;
  /** Weights + KV cache. */
  total_bytes: Record<WeightDType, number>;
  layers: { total: number; moe: number[]; dense: number; chunked: number; full: number };
  experts: { routed: number; per_token: number };
  assumptions: string[];
}

export interface EstimateOptions {
  /** Tokens held in the KV cache (default 131072 = 128k). */
  contextLength?: number;
  /** Element type of the KV cache (default "bf16"). */
  kvDtype?: KVDType;
  /** Sequences held at once (default 1). */
  batchSize?: number;
  /** Name for titles (default: _name_or_path of the config, else "Llama 4"). */
  name?: string;
}

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, where: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${where}: "${key}" is missing; the estimate needs it`);
  }
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new Error(`${where}: "${key}" must be a non-negative number, got ${JSON.stringify(v)}`);
  return v;
}

/** The text and vision parts of a config.json (multimodal "llama4" layout or a plain "llama4_text" one). */
function splitConfig(config: Json): { text: Json; vision: Json | null; tie: boolean } {
  if (!config || typeof config !== "object") throw new Error("estimateMemory: expected a parsed config.json object");
  const text = (config.text_config as Json | undefined) ?? config;
  const vision = (config.vision_config as Json | undefined) ?? null;
  const tie = Boolean(text.tie_word_embeddings ?? config.tie_word_embeddings ?? false);
  return { text, vision, tie };
}

function textLayout(t: Json) {
  const w = "text_config";
  const L = num(t, "num_hidden_layers", w);
  const step = num(t, "interleave_moe_layer_step", w, 1);
  let moe = t.moe_layers as number[] | undefined | null;
  if (!Array.isArray(moe)) {
    moe = [];
    if (step > 0) for (let i = step - 1; i < L; i += step) moe.push(i);
  }
  const chunk = (t.attention_chunk_size as number | null | undefined) ?? null;
  let types = t.layer_types as string[] | undefined | null;
  if (!Array.isArray(types) || types.length !== L) {
    let rope = t.no_rope_layers as number[] | undefined | null;
    if (!Array.isArray(rope) || rope.length < L) {
      const interval = num(t, "no_rope_layer_interval", w, 4);
      rope = Array.from({ length: L }, (_, i) => ((i + 1) % interval !== 0 ? 1 : 0));
    }
    types = rope.slice(0, L).map((r) => (r && chunk !== null ? "chunked_attention" : "full_attention"));
  }
  const chunked = chunk === null ? 0 : types.filter((x) => x === "chunked_attention").length;
  return { L, moe, chunk, chunked, full: L - chunked };
}

function textParts(t: Json, tie: boolean): Part[] {
  const w = "text_config";
  const V = num(t, "vocab_size", w);
  const H = num(t, "hidden_size", w);
  const heads = num(t, "num_attention_heads", w);
  const kv = num(t, "num_key_value_heads", w, heads);
  const hd = num(t, "head_dim", w, Math.floor(H / heads));
  const E = num(t, "num_local_experts", w);
  const k = num(t, "num_experts_per_tok", w, 1);
  const I = num(t, "intermediate_size", w);
  const bias = Boolean(t.attention_bias ?? false);
  const { L, moe } = textLayout(t);
  const dense = L - moe.length;
  const Imlp = dense > 0 ? num(t, "intermediate_size_mlp", w) : 0;

  const parts: Part[] = [];
  const matrix = (module: string, rows: number, cols: number, count: number, activeCount = count): Part => ({
    module, params: rows * cols * count, active: rows * cols * activeCount, quant: { kind: "linear", rows, count },
  });
  const keep = (module: string, params: number, active = params): Part => ({ module, params, active });

  parts.push(keep("embed_tokens", V * H));
  // Attention: q (heads*hd x H), k and v (kv*hd x H), o (H x heads*hd); Llama 4's QK norm has no weights.
  parts.push(matrix("attention", heads * hd, H, L), matrix("attention", kv * hd, H, 2 * L), matrix("attention", H, heads * hd, L));
  if (bias) parts.push(keep("attention", L * (heads * hd + 2 * kv * hd + H)));
  // MoE layers: router (E x H), routed experts (gate_up: E x H x 2I, down: E x I x H), shared expert (one SwiGLU MLP of I).
  const M = moe.length;
  if (M > 0) {
    parts.push(keep("router", M * E * H));
    parts.push(matrix("experts", I, H, 2 * E * M, 2 * k * M), matrix("experts", H, I, E * M, k * M));
    parts.push(matrix("shared_expert", I, H, 2 * M), matrix("shared_expert", H, I, M));
  }
  // Dense layers: a SwiGLU MLP of intermediate_size_mlp.
  if (dense > 0) parts.push(matrix("mlp", Imlp, H, 2 * dense), matrix("mlp", H, Imlp, dense));
  // Two RMSNorms per layer and the final one.
  parts.push(keep("norm", 2 * L * H + H));
  if (!tie) parts.push({ module: "lm_head", params: V * H, active: V * H, quant: { kind: "lm_head", rows: V, count: 1 } });
  return parts;
}

function visionParts(v: Json, textHidden: number): Part[] {
  const w = "vision_config";
  const D = num(v, "hidden_size", w);
  const L = num(v, "num_hidden_layers", w);
  const I = num(v, "intermediate_size", w);
  const C = num(v, "num_channels", w, 3);
  const P = num(v, "patch_size", w);
  const S = num(v, "image_size", w);
  const pin = num(v, "projector_input_dim", w);
  const pout = num(v, "projector_output_dim", w);
  const vout = num(v, "vision_output_dim", w);
  const projBias = Boolean(v.multi_modal_projector_bias ?? false);
  const patches = Math.floor(S / P) ** 2;
  // Nothing here is quantized: every format keeps the vision tower and the projector bf16.
  const parts: Part[] = [];
  const matrix = (module: string, rows: number, cols: number, count: number): Part => ({ module, params: rows * cols * count, active: 0 });
  const keep = (module: string, params: number): Part => ({ module, params, active: 0 });
  // Patch embedding (unfold + linear, no bias), class token, learned positions, pre/post LayerNorms.
  parts.push(matrix("vision", D, C * P * P, 1));
  parts.push(keep("vision", D + (patches + 1) * D + 4 * D));
  // Encoder layers: q/k/v/o with bias, fc1/fc2 with bias, two LayerNorms (weight + bias).
  parts.push(matrix("vision", D, D, 4 * L), matrix("vision", I, D, L), matrix("vision", D, I, L));
  parts.push(keep("vision", L * (4 * D + I + D + 4 * D)));
  // Pixel-shuffle adapter MLP (no bias): fc1 intermediate_size -> projector_input_dim, fc2 projector_output_dim^2.
  parts.push(matrix("vision", pin, I, 1), matrix("vision", pout, pout, 1));
  // Multimodal projector: vision_output_dim -> text hidden size.
  parts.push(matrix("projector", textHidden, vout, 1));
  if (projBias) parts.push(keep("projector", textHidden));
  return parts;
}

function partBytes(p: Part, dtype: WeightDType): number {
  const q = p.quant;
  if (dtype === "bf16" || !q) return 2 * p.params;
  const blockScales = (BLOCK_SCALE_BYTES / QUANT_BLOCK) * p.params;
  if (q.kind === "lm_head") return dtype === "fp8" ? 2 * p.params : p.params + blockScales;
  if (dtype === "fp8") return p.params + FP8_ROW_SCALE_BYTES * q.rows * q.count;
  return (dtype === "int8" ? 1 : 0.5) * p.params + blockScales;
}

/**
 * Parameters per module, weight bytes as llama4-ts holds them at bf16 / fp8 / int8 / int4
 * (`QUANTIZATION_ASSUMPTIONS`) and the KV cache at a context length,
 * from a parsed config.json. Active parameters count what one text token uses: attention, norms,
 * embedding and lm_head, the router, the shared expert and num_experts_per_tok routed experts per
 * MoE layer, the dense MLP elsewhere (the vision tower is not counted as active).
 */
export function estimateMemory(config: Record<string, unknown>, options: EstimateOptions = {}): MemoryEstimate {
  const { text, vision, tie } = splitConfig(config);
  const H = num(text, "hidden_size", "text_config");
  const tparts = textParts(text, tie);
  const vparts = vision ? visionParts(vision, H) : [];
  const parts = [...tparts, ...vparts];

  const order = ["embed_tokens", "attention", "router", "experts", "shared_expert", "mlp", "norm", "lm_head", "vision", "projector"];
  const modules: ModuleEstimate[] = [];
  for (const module of order) {
    const ps = parts.filter((p) => p.module === module);
    if (ps.length === 0) continue;
    const bytes = Object.fromEntries(WEIGHT_DTYPES.map((d) => [d, ps.reduce((s, p) => s + partBytes(p, d), 0)])) as Record<WeightDType, number>;
    modules.push({ module, params: ps.reduce((s, p) => s + p.params, 0), active: ps.reduce((s, p) => s + p.active, 0), bytes });
  }
  const sum = (ps: Part[]) => ps.reduce((s, p) => s + p.params, 0);
  const weights_bytes = Object.fromEntries(WEIGHT_DTYPES.map((d) => [d, modules.reduce((s, m) => s + m.bytes[d], 0)])) as Record<WeightDType, number>;

  // KV cache: 2 (K, V) x kv_heads x head_dim x bytes per element per token and layer; chunked layers hold at most a chunk.
  const heads = num(text, "num_attention_heads", "text_config");
  const kvHeads = num(text, "num_key_value_heads", "text_config", heads);
  const hd = num(text, "head_dim", "text_config", Math.floor(H / heads));
  const layout = textLayout(text);
  const context = options.contextLength ?? 131072;
  const batch = options.batchSize ?? 1;
  const kvDtype = options.kvDtype ?? "bf16";
  if (KV_BYTES[kvDtype] === undefined) throw new Error(`kvDtype must be one of ${Object.keys(KV_BYTES).join(", ")}, got ${JSON.stringify(kvDtype)}`);
  // The engine's int8 cache (kv_cache_dtype "int8") keeps an f32 scale per head_dim elements of a token and head.
  const bpe = kvDtype === "int8" ? 1 + 4 / hd : KV_BYTES[kvDtype];
  const perTokenLayer = 2 * kvHeads * hd * bpe;
  const chunkedPositions = layout.chunk === null ? context : Math.min(context, layout.chunk);
  const kvBytes = batch * perTokenLayer * (layout.full * context + layout.chunked * chunkedPositions);
  const kv_cache: KVCacheEstimate = {
    context_length: context,
    batch_size: batch,
    dtype: kvDtype,
    bytes_per_element: bpe,
    bytes_per_token_per_layer: perTokenLayer,
    chunk_size: layout.chunk,
    chunked_layers: layout.chunked,
    full_layers: layout.full,
    chunked_positions: chunkedPositions,
    bytes: kvBytes,
  };

  const name = options.name ?? (typeof config._name_or_path === "string" ? (config._name_or_path as string) : "Llama 4");
  return {
    name,
    params: { total: sum(parts), active: tparts.reduce((s, p) => s + p.active, 0), text: sum(tparts), vision: sum(vparts) },
    modules,
    weights_bytes,
    kv_cache,
    total_bytes: Object.fromEntries(WEIGHT_DTYPES.map((d) => [d, weights_bytes[d] + kvBytes])) as Record<WeightDType, number>,
    layers: { total: layout.L, moe: layout.moe, dense: layout.L - layout.moe.length, chunked: layout.chunked, full: layout.full },
    experts: { routed: num(text, "num_local_experts", "text_config"), per_token: num(text, "num_experts_per_tok", "text_config", 1) },
    assumptions: [
      ...QUANTIZATION_ASSUMPTIONS,
      `KV cache: ${kvDtype} (${bpe} byte${bpe > 1 ? "s" : ""} per element), ${context} tokens x ${batch} sequence${batch > 1 ? "s" : ""}; ` +
        `chunked-attention layers hold at most attention_chunk_size (${layout.chunk ?? "none"}) positions.`,
      "Active parameters: one text token's path (embedding, attention, norms, router, shared expert, num_experts_per_tok routed experts or the dense MLP, lm_head); the vision tower is not counted.",
      "Runtime extras (activations, scratch, allocator slack) are not included.",
    ],
  };
}

const GB = 1e9;

/** One line per weight format: "  at int8 (dtype "q8"): 115.5 GB weights + 7.7 GB KV cache (128k tokens, bf16) = 123.2 GB". */
export function describeEstimate(e: MemoryEstimate): string {
  const b = (x: number) => `${(x / 1e9).toFixed(1)}B`;
  const ctx = e.kv_cache.context_length % 1024 === 0 ? `${e.kv_cache.context_length / 1024}k` : String(e.kv_cache.context_length);
  const lines = [`${e.name}: ${b(e.params.total)} parameters (${b(e.params.active)} active per token; vision ${b(e.params.vision)})`];
  for (const d of WEIGHT_DTYPES) {
    lines.push(`  at ${d} (${WEIGHT_DTYPE_SOURCES[d]}): ${(e.weights_bytes[d] / GB).toFixed(1)} GB weights + ${(e.kv_cache.bytes / GB).toFixed(1)} GB KV cache ` +
      `(${ctx} tokens, ${e.kv_cache.dtype}) = ${(e.total_bytes[d] / GB).toFixed(1)} GB`);
  }
  return lines.join("\n");
}

const PART_OF: Record<string, string> = {
  embed_tokens: "embeddings + lm_head",
  lm_head: "embeddings + lm_head",
  attention: "attention",
  router: "router + norms",
  norm: "router + norms",
  experts: "routed experts",
  shared_expert: "shared expert + dense MLP",
  mlp: "shared expert + dense MLP",
  vision: "vision tower + projector",
  projector: "vision tower + projector",
};

const KV_PART = "KV cache";
const PART_ORDER = ["routed experts", "shared expert + dense MLP", "attention", "embeddings + lm_head", "router + norms",
  "vision tower + projector", KV_PART];

export interface EstimateRow {
  config: string;
  dtype: WeightDType;
  part: string;
  /** Stacking order (routed experts at the bottom, KV cache on top). */
  order: number;
  bytes: number;
  gb: number;
}

export function estimateChartData(estimates: MemoryEstimate[], options: { includeKv?: boolean } = {}): EstimateRow[] {
  const rows: EstimateRow[] = [];
  for (const e of estimates) {
    for (const dtype of WEIGHT_DTYPES) {
      const parts = new Map<string, number>();
      for (const m of e.modules) parts.set(PART_OF[m.module] ?? m.module, (parts.get(PART_OF[m.module] ?? m.module) ?? 0) + m.bytes[dtype]);
      if (options.includeKv ?? true) parts.set(KV_PART, e.kv_cache.bytes);
      for (const [part, bytes] of parts) rows.push({ config: e.name, dtype, part, order: PART_ORDER.indexOf(part), bytes, gb: bytes / GB });
    }
  }
  return rows;
}

/** Vega-Lite: one panel per config, a stacked bar per weight dtype (GB), parts as colours, KV cache on top. */
export function estimateChart(estimates: MemoryEstimate[], options: { includeKv?: boolean } = {}): VegaLiteSpec {
  if (estimates.length === 0) throw new Error("estimateChart: give at least one estimate");
  const rows = estimateChartData(estimates, options);
  const contexts = [...new Set(estimates.map((e) => `${e.kv_cache.context_length} tokens at ${e.kv_cache.dtype}`))];
  const kvNote = (options.includeKv ?? true) ? `; KV cache for ${contexts.join(" / ")}` : "";
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: "Estimated memory by weight dtype",
      subtitle: [`weights from config.json alone, as llama4-ts holds them${kvNote}`,
        'fp8: FbgemmFp8Config; int8: dtype "q8"; int4: dtype "q4"'],
    },
    data: { values: rows },
    mark: { type: "bar" },
    width: { step: 44 },
    height: 260,
    encoding: {
      column: { field: "config", type: "nominal", title: null, sort: estimates.map((e) => e.name) },
      x: { field: "dtype", type: "nominal", title: "weights", sort: WEIGHT_DTYPES, axis: { labelAngle: 0 } },
      y: { aggregate: "sum", field: "gb", type: "quantitative", title: "GB" },
      color: {
        field: "part",
        type: "nominal",
        title: null,
        sort: PART_ORDER,
        scale: { domain: PART_ORDER, scheme: "tableau10" },
        legend: { labelLimit: 240 },
      },
      order: { field: "order", type: "quantitative", sort: "ascending" },
      tooltip: [
        { field: "config", type: "nominal" },
        { field: "dtype", type: "nominal" },
        { field: "part", type: "nominal" },
        { field: "gb", type: "quantitative", title: "GB", format: ".2f" },
      ],
    },
  };
}
