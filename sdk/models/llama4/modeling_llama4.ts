// Llama4ForCausalLM / Llama4ForConditionalGeneration over the native engine, named and shaped as
// in transformers' modeling_llama4.py (snake_case options, async where Python blocks).
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

import { native, NativeKVCache, NativeModel } from "../../native";
import { Tensor, toIdMatrix } from "../../tensor";
import { resolveDType, DTypeName } from "../../torch";

export type AttnImplementation = "eager" | "sdpa" | "flex_attention";

export interface FromPretrainedOptions {
  /** "auto" (the checkpoint's dtype), "float32", "bfloat16", "float16", or torch.<dtype>. */
  dtype?: unknown;
  /** Older transformers spelling of `dtype`. */
  torch_dtype?: unknown;
  /** Only "cpu" / "auto": the engine runs on the CPU. */
  device_map?: string;
  /** All three names run the same exact-softmax kernel in this version. */
  attn_implementation?: AttnImplementation;
}

export type IdsInput = number[][] | number[] | Tensor;

export interface Llama4ForwardInputs {
  input_ids: IdsInput;
  attention_mask?: IdsInput;
  position_ids?: IdsInput;
  past_key_values?: DynamicCache;
  use_cache?: boolean;
  output_hidden_states?: boolean;
  output_router_logits?: boolean;
  /** Compute logits for the last N positions only (0 = all), as transformers' logits_to_keep. */
  logits_to_keep?: number;
}

export interface Llama4CausalLMOutput {
  /** [batch, seq (or logits_to_keep), vocab_size] */
  logits: Tensor;
  past_key_values?: DynamicCache;
  /** num_hidden_layers + 1 tensors [batch, seq, hidden]: embeddings, each layer, the last one after the final norm. */
  hidden_states?: Tensor[];
  /** One [batch * seq, num_local_experts] tensor per MoE layer, as transformers returns them. */
  router_logits?: Tensor[];
}

export interface GreedyGenerateInputs {
  input_ids: IdsInput;
  attention_mask?: IdsInput;
  max_new_tokens?: number;
  min_new_tokens?: number;
  do_sample?: boolean;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
}

/** transformers' DynamicCache: the keys/values of past positions, owned by the engine. */
export class DynamicCache {
  constructor(readonly native: NativeKVCache) {}
  get_seq_length(): number {
    return this.native.length;
  }
}

type JsonObject = Record<string, unknown>;

function readJson(path: string): JsonObject {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as JsonObject;
  } catch (e) {
    throw new Error(`${path}: cannot read JSON (${(e as Error).message})`);
  }
}

function resolveCheckpointDir(pathOrId: string): string {
  if (typeof pathOrId !== "string" || pathOrId.length === 0) {
    throw new Error("from_pretrained expects a checkpoint directory (or model id)");
  }
  const dir = resolve(pathOrId);
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    if (!existsSync(join(dir, "config.json"))) throw new Error(`${dir}: no config.json in this directory`);
    return dir;
  }
  throw new Error(`${pathOrId}: not a local checkpoint directory (downloading model ids from the Hub is not supported yet)`);
}

function argmax(row: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (row[offset + i] > row[offset + best]) best = i;
  return best;
}

export class Llama4PreTrainedModel {
  /** The model's config.json (for the multimodal layout, its text_config is what the text path uses). */
  readonly config: JsonObject;
  readonly generation_config: JsonObject;
  readonly device = "cpu";
  readonly dtype: DTypeName;
  readonly attn_implementation: AttnImplementation;
  /** The text model's per-layer structure as the engine derived it (moe_layers, no_rope_layers, layer_types...). */
  readonly text_config: JsonObject & { vocab_size: number; num_hidden_layers: number; hidden_size: number; moe_layers: number[] };

  /** Use `await X.from_pretrained(...)`. */
  constructor(
    protected readonly engine: NativeModel,
    config: JsonObject,
    generationConfig: JsonObject,
    dtype: DTypeName,
    attn: AttnImplementation,
  ) {
    this.config = config;
    this.generation_config = generationConfig;
    this.dtype = dtype;
    this.attn_implementation = attn;
    const raw = (config.text_config as JsonObject | undefined) ?? config;
    this.text_config = { ...raw, ...JSON.parse(engine.config()) };
  }

  static async from_pretrained<T extends Llama4PreTrainedModel>(
    this: new (engine: NativeModel, config: JsonObject, gen: JsonObject, dtype: DTypeName, attn: AttnImplementation) => T,
    pathOrId: string,
    options: FromPretrainedOptions = {},
  ): Promise<T> {
    const dtype = resolveDType(options.dtype ?? options.torch_dtype);
    const attn = options.attn_implementation ?? "sdpa";
    if (!["eager", "sdpa", "flex_attention"].includes(attn)) {
      throw new Error(`attn_implementation "${attn}" is not supported: use "eager", "sdpa" or "flex_attention"`);
    }
    if (options.device_map !== undefined && options.device_map !== "auto" && options.device_map !== "cpu") {
      throw new Error(`device_map "${options.device_map}" is not available: this engine runs on "cpu"`);
    }
    const dir = resolveCheckpointDir(pathOrId);
    const config = readJson(join(dir, "config.json"));
    const genPath = join(dir, "generation_config.json");
    const generationConfig = existsSync(genPath) ? readJson(genPath) : {};
    const engine = await native().loadModel(dir, { dtype });
    return new this(engine, config, generationConfig, dtype, attn);
  }

  /** Stops the forward/generate calls in flight: they reject with an AbortError, the model stays usable. */
  cancel(): void {
    this.engine.cancel();
  }

  async forward(inputs: Llama4ForwardInputs): Promise<Llama4CausalLMOutput> {
    if (!inputs || inputs.input_ids === undefined) throw new Error("forward: input_ids is required");
    const ids = toIdMatrix(inputs.input_ids, "input_ids");
    const past = inputs.past_key_values;
    const cache = past ? past : inputs.use_cache ? new DynamicCache(this.engine.createCache(ids.rows)) : undefined;
    const pastLength = cache ? cache.get_seq_length() : 0;
    const mask = inputs.attention_mask === undefined ? undefined : toIdMatrix(inputs.attention_mask, "attention_mask");
    if (mask && (mask.rows !== ids.rows || mask.cols !== pastLength + ids.cols)) {
      throw new Error(
        `attention_mask must be [${ids.rows}, ${pastLength + ids.cols}] (batch, past + new tokens), got [${mask.rows}, ${mask.cols}]`,
      );
    }
    const positions = inputs.position_ids === undefined ? undefined : toIdMatrix(inputs.position_ids, "position_ids");
    if (positions && (positions.rows !== ids.rows || positions.cols !== ids.cols)) {
      throw new Error(`position_ids must have the shape of input_ids [${ids.rows}, ${ids.cols}]`);
    }
    const keep = inputs.logits_to_keep ?? 0;
    if (!Number.isInteger(keep) || keep < 0) throw new Error(`logits_to_keep must be a non-negative integer, got ${keep}`);

    const out = await this.engine.forward({
      inputIds: ids.data,
      batch: ids.rows,
      seqLen: ids.cols,
      attentionMask: mask?.data,
      positionIds: positions?.data,
      cache: cache?.native,
      outputHiddenStates: !!inputs.output_hidden_states,
      outputRouterLogits: !!inputs.output_router_logits,
      logitsToKeep: keep,
    });
    const V = this.text_config.vocab_size;
    const H = this.text_config.hidden_size;
    const result: Llama4CausalLMOutput = { logits: new Tensor("float32", out.logits, [ids.rows, out.kept, V]) };
    if (cache) result.past_key_values = cache;
    if (out.hiddenStates) {
      const per = ids.rows * ids.cols * H;
      result.hidden_states = Array.from({ length: this.text_config.num_hidden_layers + 1 }, (_, i) =>
        new Tensor("float32", out.hiddenStates!.subarray(i * per, (i + 1) * per), [ids.rows, ids.cols, H]),
      );
    }
    if (out.routerLogits) {
      const E = this.text_config.num_local_experts as number;
      const per = ids.rows * ids.cols * E;
      result.router_logits = (out.moeLayers ?? []).map(
        (_, i) => new Tensor("float32", out.routerLogits!.subarray(i * per, (i + 1) * per), [ids.rows * ids.cols, E]),
      );
    }
    return result;
  }

  /**
   * Greedy decoding with the KV cache (sampling, streamers and the full GenerationConfig come with
   * the generation module). Returns prompt + new ids, [batch, seq + new]; rows that finished early
   * are filled with pad_token_id, as transformers does.
   */
  async generate(inputs: GreedyGenerateInputs): Promise<Tensor> {
    if (inputs.do_sample) throw new Error("generate: do_sample=true is not supported yet (greedy decoding only)");
    const ids = toIdMatrix(inputs.input_ids, "input_ids");
    const maxNew = inputs.max_new_tokens ?? 20;
    const minNew = inputs.min_new_tokens ?? 0;
    if (!Number.isInteger(maxNew) || maxNew < 1) throw new Error(`max_new_tokens must be a positive integer, got ${maxNew}`);
    const eosOption = inputs.eos_token_id !== undefined ? inputs.eos_token_id : this.generation_config.eos_token_id;
    const eos = new Set<number>(eosOption === null || eosOption === undefined ? [] : ([] as number[]).concat(eosOption as number[]));
    const pad = inputs.pad_token_id ?? (this.generation_config.pad_token_id as number | undefined) ?? [...eos][0] ?? 0;
    const B = ids.rows;
    const mask = inputs.attention_mask ? toIdMatrix(inputs.attention_mask, "attention_mask").data : new Int32Array(ids.data.length).fill(1);
    const maskRows: number[][] = Array.from({ length: B }, (_, b) => Array.from(mask.subarray(b * ids.cols, (b + 1) * ids.cols)));
    // Positions count real tokens only (cumsum(mask) - 1), as generate() computes them.
    const nextPosition = maskRows.map((row) => row.reduce((a, v) => a + v, 0));
    const positions = maskRows.map((row) => {
      let seen = 0;
      return row.map((m) => Math.max(0, (seen += m) - 1));
    });
    const rows: number[][] = Array.from({ length: B }, (_, b) => Array.from(ids.data.subarray(b * ids.cols, (b + 1) * ids.cols)));
    const done = new Array<boolean>(B).fill(false);
    const cache = new DynamicCache(this.engine.createCache(B));
    let step = await this.forward({ input_ids: rows, attention_mask: maskRows, position_ids: positions, past_key_values: cache, logits_to_keep: 1 });
    const V = this.text_config.vocab_size;
    for (let n = 0; n < maxNew; n++) {
      const logits = step.logits.data as Float32Array;
      const next: number[] = [];
      for (let b = 0; b < B; b++) {
        if (n < minNew) for (const e of eos) if (e >= 0 && e < V) logits[b * V + e] = -Infinity;
        const token = done[b] ? pad : argmax(logits, b * V, V);
        next.push(token);
        rows[b].push(token);
        maskRows[b].push(1);
        if (eos.has(token)) done[b] = true;
      }
      if (done.every(Boolean) || n === maxNew - 1) break;
      step = await this.forward({
        input_ids: next.map((t) => [t]),
        attention_mask: maskRows,
        position_ids: nextPosition.map((p, b) => [p + n]),
        past_key_values: cache,
        logits_to_keep: 1,
      });
    }
    const width = rows[0].length;
    return new Tensor("int32", Int32Array.from(rows.flat()), [B, width]);
  }
}

/** Llama 4 text model with its language-modelling head (checkpoints with model.* / lm_head.*). */
export class Llama4ForCausalLM extends Llama4PreTrainedModel {}

/** The multimodal checkpoint layout (language_model.model.*); this version runs its text path. */
export class Llama4ForConditionalGeneration extends Llama4PreTrainedModel {}
