// Llama4ForCausalLM / Llama4ForConditionalGeneration over the native engine, named and shaped as
// in transformers' modeling_llama4.py (snake_case options, async where Python blocks).
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";

import { readJsonFile } from "../../configuration_utils";
import { readTextFile } from "../../utils/files";
import { valueText } from "../../utils/options";
import { checkAffordable, checkedProduct } from "../../utils/sizes";
import { GenerationConfig } from "../../generation/configuration_utils";
import { generate, GenerateOptions, GenerateOutput } from "../../generation/utils";
import { HUB_OPTION_KEYS, PretrainedOptions, resolvePretrained } from "../../hub";
import { native, NativeKVCache, NativeModel } from "../../native";
import { Tensor, toIdMatrix } from "../../tensor";
import { resolveDType, DTypeName } from "../../torch";
import { FbgemmFp8Config } from "../../utils/quantization_config";
import { registerCancellable } from "../../utils/cancellation";
import { checkOptions, describe } from "../../utils/options";
import { GenerationTrace, stepFromOutput, TraceOptions } from "../../trace";
import type { ExpertIntervention, MemoryStep, TraceModelInfo, WeightMemory } from "../../trace";
import { Llama4Config, Llama4TextConfig, llama4ConfigFromJson, textConfigOf } from "./configuration_llama4";

function describeTensor(value: unknown): string {
  return value instanceof Tensor ? `a ${value.dtype} Tensor [${value.dims.join(", ")}]` : describe(value);
}

export type AttnImplementation = "eager" | "sdpa" | "flex_attention";

export interface FromPretrainedOptions extends PretrainedOptions {
  /**
   * "auto" (the checkpoint's dtype), "float32", "bfloat16", "float16", or torch.<dtype>; or "q8" / "q4" to
   * quantize the text model's linear layers at load (8 / 4-bit blocks of 32 with an f16 scale each; lm_head at
   * 8 bits; router, embeddings, norms and vision tower unchanged).
   */
  dtype?: unknown;
  /** Older transformers spelling of `dtype`. */
  torch_dtype?: unknown;
  /** Only "cpu" / "auto": the engine runs on the CPU. */
  device_map?: string;
  /** Tensor parallelism across devices: only "auto", which here is the one CPU process (the docs' FP8 example passes it). */
  tp_plan?: string;
  /** All three compute exact softmax attention; only "eager" can return attention probabilities. */
  attn_implementation?: AttnImplementation;
  /** Quantize at load: FbgemmFp8Config (FP8 weights and activations). Checkpoints already quantized need none. */
  quantization_config?: FbgemmFp8Config;
  /**
   * What the KV cache holds: "float32" (the default; the engine computes in f32), "bfloat16" (half the memory, what
   * transformers keeps for a bf16 model) or "int8" (a quarter, plus an f32 scale per head_dim elements of each token
   * and head: symmetric, code = round(127 x / max|x|)). Keys and values are rounded to it as they are computed, in
   * every forward, so a cached decode still equals the full forward. generate's cache_implementation "quantized"
   * gives one generation an int8 cache whatever this says.
   */
  kv_cache_dtype?: KvCacheDtype;
  /**
   * false (the default): weights used as stored (a bf16 checkpoint's, say) are copied out of the checkpoint into the
   * engine's memory, on huge pages, which decode streams faster (5-12% on the MoE benchmark model; its experts are
   * also laid out for decode, another 5-10%). Loading then takes longer: about 5 s for that 3.66 GB checkpoint on a
   * 2-core VM, mostly the kernel zeroing fresh pages. true keeps them in the memory-mapped file, as llama.cpp does by
   * default: loading is instant and the OS may drop their pages under memory pressure and read them again. The
   * memory held is the same either way.
   */
  use_mmap?: boolean;
}

export type KvCacheDtype = "float32" | "bfloat16" | "int8";
const KV_CACHE_DTYPES: readonly KvCacheDtype[] = ["float32", "bfloat16", "int8"];

export type IdsInput = number[][] | number[] | Tensor;

export interface Llama4ForwardInputs {
  input_ids: IdsInput;
  attention_mask?: IdsInput;
  position_ids?: IdsInput;
  /** The KV cache to read and extend (transformers 5.24's name). */
  cache?: DynamicCache;
  /** The same, by its older name (a deprecated alias in transformers 5.24). */
  past_key_values?: DynamicCache;
  use_cache?: boolean;
  output_hidden_states?: boolean;
  output_router_logits?: boolean;
  /** true: every layer's attention probabilities; a list: those layers only. Needs attn_implementation "eager". */
  output_attentions?: boolean | number[];
  /** Expert interventions for research: per MoE layer, experts never or always chosen. */
  expert_mask?: ExpertIntervention[];
  /** Compute logits for the last N positions only (0 = all), as transformers' logits_to_keep. */
  logits_to_keep?: number;
  /** Llama4ForConditionalGeneration: the processor's pixel_values [tiles, 3, H, W] for the <|patch|> tokens of input_ids. */
  pixel_values?: Tensor;
  /** Llama4ForConditionalGeneration: image features already projected to the text width, [<|patch|> tokens, hidden_size]
   * (what pixel_values become; see embed_images), placed in order at the <|patch|> tokens of input_ids. */
  image_features?: Tensor;
}

export interface Llama4CausalLMOutput {
  /** [batch, seq (or logits_to_keep), vocab_size] */
  logits: Tensor;
  /** The KV cache (with use_cache or a cache given); past_key_values is the same object, by its older name. */
  cache?: DynamicCache;
  past_key_values?: DynamicCache;
  /** num_hidden_layers + 1 tensors [batch, seq, hidden]: embeddings, each layer, the last one after the final norm. */
  hidden_states?: Tensor[];
  /** One [batch * seq, num_local_experts] tensor per MoE layer, as transformers returns them. */
  router_logits?: Tensor[];
  /** With router logits: the experts each token went to (after expert_mask), [batch * seq, top_k] per MoE layer, best first. */
  router_experts?: Tensor[];
  /** Their weights (sigmoid of the router logit), [batch * seq, top_k] per MoE layer. */
  router_scores?: Tensor[];
  /** The MoE layer index of each router_* entry. */
  moe_layers?: number[];
  /** Per requested layer: [batch, heads, seq, past + seq] attention probabilities. */
  attentions?: Tensor[];
  /** The layers `attentions` belong to. */
  attention_layers?: number[];
  /** Largest working memory the engine held during this call (bytes). */
  scratch_peak_bytes: number;
}

/** transformers' DynamicCache: the keys/values of past positions, owned by the engine. */
export class DynamicCache {
  constructor(readonly native: NativeKVCache) {}
  get_seq_length(): number {
    return this.native.length;
  }
}

/** Logits with NaN or infinity would decode to arbitrary tokens without a word: they become an error that says
 * where they first appear (a checkpoint whose weights hold non-finite values, or inputs that drive it there). */
function checkFinite(logits: Float32Array, V: number, kept: number, source: string): void {
  for (let i = 0; i < logits.length; i++) {
    if (!Number.isFinite(logits[i])) {
      const row = Math.floor(i / V);
      throw new Error(`forward: the logits hold ${logits[i]} (batch ${Math.floor(row / kept)}, kept position ${row % kept}, token ${i % V}): ` +
        `the weights or config.json values of ${source}, or the inputs, lead to non-finite values`);
    }
  }
}

/** The cache a call was given: `cache` (transformers 5.24) or its older name `past_key_values`, not both. */
export function cacheOption(options: { cache?: DynamicCache; past_key_values?: DynamicCache }, where: string): DynamicCache | undefined {
  if (options.cache !== undefined && options.past_key_values !== undefined) {
    throw new Error(`${where}: pass cache or past_key_values (its older name), not both`);
  }
  return options.cache ?? options.past_key_values;
}

const FROM_PRETRAINED_KEYS = ["dtype", "torch_dtype", "device_map", "tp_plan", "attn_implementation", "quantization_config",
  "kv_cache_dtype", "use_mmap", ...HUB_OPTION_KEYS] as const;
const FORWARD_KEYS = ["input_ids", "attention_mask", "position_ids", "cache", "past_key_values", "use_cache", "output_hidden_states",
  "output_router_logits", "output_attentions", "expert_mask", "logits_to_keep", "pixel_values", "image_features"] as const;

/**
 * `json` (an object's text) with top-level `key` set to `value` (JSON text), everything else kept byte for byte.
 * Written by hand because a parse / stringify round trip turns 0.0 into 0, and transformers' strict config
 * classes reject an int where the field is a float (router_jitter_noise, rope_theta...).
 */
function withTopLevelKey(json: string, key: string, value: string): string {
  // Scan the top level for "key": its value's extent, skipping strings and nested brackets.
  let depth = 0, valueStart = -1, valueEnd = -1;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === "\\" ? 2 : 1;
      if (depth === 1 && valueStart < 0 && JSON.parse(json.slice(i, j + 1)) === key && /^\s*:/.test(json.slice(j + 1))) {
        valueStart = json.indexOf(":", j) + 1;
      }
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
    } else if (c === "}" || c === "]" || (c === "," && depth === 1)) {
      if (valueStart >= 0 && valueEnd < 0 && depth === 1) valueEnd = i;
      if (c !== ",") depth--;
    }
  }
  if (valueStart >= 0) return json.slice(0, valueStart) + " " + value + json.slice(valueEnd);
  const close = json.lastIndexOf("}");
  const body = json.slice(0, close).trimEnd();
  return `${body}${body.endsWith("{") ? "" : ","}\n  "${key}": ${value}\n}\n`;
}

export class Llama4PreTrainedModel {
  /** Llama4Config for the multimodal layout, Llama4TextConfig for Llama4ForCausalLM checkpoints. */
  readonly config: Llama4Config | Llama4TextConfig;
  readonly generation_config: GenerationConfig;
  readonly device = "cpu";
  readonly dtype: DTypeName;
  readonly attn_implementation: AttnImplementation;
  /** The id or directory it was loaded from. */
  readonly name_or_path: string;
  private cancellations = 0;
  /** The local folder the weights were read from (a download lands in the hub cache). */
  private source_dir = "";

  private warnedPositions = false;

  /** Positions past max_position_embeddings still work (RoPE is computed per position, not from a table), as in
   * transformers; say so once, since the model was not trained on them. */
  private warnPastMaxPositions(length: number): void {
    const max = this.text_config.max_position_embeddings;
    if (this.warnedPositions || !(length > max)) return;
    this.warnedPositions = true;
    console.warn(`llama4-ts: positions up to ${length} go past the config's max_position_embeddings (${max}); ` +
      "they are computed like the others, but the model was not trained on them");
  }

  /** Use `await X.from_pretrained(...)`. */
  constructor(
    protected readonly engine: NativeModel,
    config: Llama4Config | Llama4TextConfig,
    generationConfig: GenerationConfig,
    dtype: DTypeName,
    attn: AttnImplementation,
    nameOrPath: string,
  ) {
    this.name_or_path = nameOrPath;
    this.config = config;
    this.generation_config = generationConfig;
    this.dtype = dtype;
    this.attn_implementation = attn;
  }

  /** The text model's config (config.text_config for the multimodal layout). */
  get text_config(): Llama4TextConfig {
    return textConfigOf(this.config);
  }

  static async from_pretrained<T extends Llama4PreTrainedModel>(
    this: new (
      engine: NativeModel,
      config: Llama4Config | Llama4TextConfig,
      gen: GenerationConfig,
      dtype: DTypeName,
      attn: AttnImplementation,
      nameOrPath: string,
    ) => T,
    pathOrId: string,
    options: FromPretrainedOptions = {},
  ): Promise<T> {
    checkOptions("from_pretrained", options, FROM_PRETRAINED_KEYS);
    const dtype = resolveDType(options.dtype ?? options.torch_dtype);
    const attn = options.attn_implementation ?? "sdpa";
    if (!["eager", "sdpa", "flex_attention"].includes(attn)) {
      throw new Error(`attn_implementation "${attn}" is not supported: use "eager", "sdpa" or "flex_attention"`);
    }
    if (options.tp_plan !== undefined && options.tp_plan !== "auto") {
      throw new Error(`tp_plan "${options.tp_plan}" is not available: the engine runs in one process on the CPU (use "auto" or leave it out)`);
    }
    if (options.device_map !== undefined && options.device_map !== "auto" && options.device_map !== "cpu") {
      throw new Error(`device_map "${options.device_map}" is not available: this engine runs on "cpu"`);
    }
    const dir = await resolvePretrained(pathOrId, { required: ["config.json"], optional: ["generation_config.json"], weights: true }, options);
    const config = llama4ConfigFromJson(readJsonFile(join(dir, "config.json")), join(dir, "config.json"));
    const generationConfig = GenerationConfig.from_dir(dir);
    const quantization = options.quantization_config;
    if (quantization !== undefined && !(quantization instanceof FbgemmFp8Config)) {
      throw new Error(`quantization_config: ${describe(quantization)} is not supported; pass new FbgemmFp8Config() ` +
        `(compressed-tensors checkpoints load without one; dtype "q8" / "q4" quantizes at load)`);
    }
    if (options.use_mmap !== undefined && typeof options.use_mmap !== "boolean") {
      throw new Error(`use_mmap must be true or false, got ${describe(options.use_mmap)}`);
    }
    const kvCacheDtype = options.kv_cache_dtype ?? "float32";
    if (!KV_CACHE_DTYPES.includes(kvCacheDtype)) {
      throw new Error(`kv_cache_dtype ${JSON.stringify(kvCacheDtype)} is not supported: use ${KV_CACHE_DTYPES.map((d) => `"${d}"`).join(", ")}`);
    }
    // The engine reports after each decoder layer, the last report being (total, total). Reports reach this thread
    // in their own turns, possibly after the load's promise settles: from_pretrained returns once the last one is in.
    const progress = options.progress_callback;
    let lastReport!: () => void;
    const reportsDone = new Promise<void>((resolve) => (lastReport = resolve));
    let displayBroken = false;
    const onLayerLoaded = (loaded: number, total: number) => {
      if (progress && !displayBroken) {
        try {
          progress({ status: "loading", file: "weights", name: pathOrId, loaded, total });
        } catch (err) {  // a broken progress display must not fail the load; said once
          displayBroken = true;
          console.warn(`from_pretrained: progress_callback threw while loading ${pathOrId}: ${(err as Error)?.message ?? String(err)}`);
        }
      }
      if (loaded >= total) lastReport();
    };
    const engine = await native().loadModel(dir, {
      dtype,
      kvCacheDtype,
      useMmap: options.use_mmap ?? false,
      ...(progress ? { onLayerLoaded } : {}),
      ...(quantization ? { fbgemmFp8: JSON.stringify({ activation_scale_ub: quantization.activation_scale_ub, modules_to_not_convert: quantization.modules_to_not_convert }) } : {}),
    });
    const model = new this(engine, config, generationConfig, dtype, attn, pathOrId);
    if (progress && model.text_config.num_hidden_layers > 0) await reportsDone;
    model.source_dir = dir;
    registerCancellable(model); // so cancelAll() (a Jupyter interrupt) reaches it
    return model;
  }

  /** Stops the forward/generate calls in flight: they reject with an AbortError, the model stays usable. */
  cancel(): void {
    this.cancellations++;
    this.engine.cancel();
  }

  /** How many times cancel() was called: generate compares it between its steps, where no native call is
   * in flight for the engine to stop (e.g. cancel() called from a streamer). */
  get cancel_count(): number {
    return this.cancellations;
  }

  /** An empty KV cache for `batch` rows, holding kv_cache_dtype (the model's kv_cache_dtype by default). */
  new_cache(batch = 1, kv_cache_dtype?: KvCacheDtype): DynamicCache {
    if (kv_cache_dtype !== undefined && !KV_CACHE_DTYPES.includes(kv_cache_dtype)) {
      throw new Error(`new_cache: kv_cache_dtype ${JSON.stringify(kv_cache_dtype)} is not supported: use ${KV_CACHE_DTYPES.map((d) => `"${d}"`).join(", ")}`);
    }
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`new_cache: batch must be an integer >= 1, got ${valueText(batch)}`);
    // What one position of the cache will cost across the batch: a batch that cannot hold even one is refused now.
    const t = this.text_config;
    const perToken = checkedProduct([2, t.num_hidden_layers, t.num_key_value_heads, t.head_dim, 4, batch], "new_cache: bytes per position");
    checkAffordable(perToken, `new_cache(${batch}): one position of the KV cache for a batch of ${batch}`);
    return new DynamicCache(this.engine.createCache(batch, kv_cache_dtype));
  }

  /** What a trace records about this model. */
  trace_model_info(): TraceModelInfo {
    const c = this.text_config;
    return {
      // A local checkpoint is named by its folder: titles stay short and carry no machine paths.
      name: existsSync(this.name_or_path) ? basename(resolve(this.name_or_path)) : this.name_or_path,
      num_hidden_layers: c.num_hidden_layers,
      num_local_experts: c.num_local_experts,
      num_experts_per_tok: c.num_experts_per_tok,
      moe_layers: c.moe_layers,
      layer_types: c.layer_types,
      attention_chunk_size: c.attention_chunk_size,
      num_attention_heads: c.num_attention_heads,
    };
  }

  /** KV cache, working memory and process memory after a forward call, for traces. */
  memory_step(cache: DynamicCache | undefined, out: { scratch_peak_bytes: number }): Omit<MemoryStep, "step"> {
    return {
      kv_cache_bytes_by_layer: cache ? cache.native.layerBytes() : new Array(this.text_config.num_hidden_layers).fill(0),
      scratch_peak_bytes: out.scratch_peak_bytes,
      rss_bytes: process.memoryUsage().rss,
    };
  }

  /**
   * Writes the quantized model (dtype "q8" / "q4", FbgemmFp8Config, or a quantized checkpoint) to `save_directory`
   * as a compressed-tensors checkpoint that transformers and from_pretrained load as they are, so quantizing at
   * load is done once: config.json with its quantization_config, generation_config.json and model.safetensors
   * (int4 / int8 pack-quantized in groups of 32 with f16 scales, or FP8 with a scale per output row; fused experts
   * as one Linear per expert; every other tensor as the checkpoint stores it). A tied lm_head is saved tied.
   */
  async save_pretrained(save_directory: string): Promise<void> {
    if (typeof save_directory !== "string" || save_directory === "") throw new Error("save_pretrained: save_directory must be a folder path");
    const target = resolve(save_directory);
    if (target === resolve(this.source_dir)) {
      throw new Error(`save_pretrained: ${save_directory} is the folder the model was loaded from; its weights are still in use`);
    }
    mkdirSync(target, { recursive: true });
    // Written under a temporary name and renamed, so a failure never leaves a half-written checkpoint behind.
    const weights = join(target, "model.safetensors");
    const partial = `${weights}.partial`;
    let quantization: string;
    try {
      quantization = await this.engine.saveQuantized(partial);
    } catch (e) {
      rmSync(partial, { force: true });
      throw e;
    }
    renameSync(partial, weights);
    for (const stale of ["model.safetensors.index.json"]) rmSync(join(target, stale), { force: true });
    const configPath = join(this.source_dir, "config.json");
    readJsonFile(configPath); // validated at load; still a JSON object
    writeFileSync(join(target, "config.json"), withTopLevelKey(readTextFile(configPath), "quantization_config", quantization));
    const generation = join(this.source_dir, "generation_config.json");
    if (existsSync(generation)) copyFileSync(generation, join(target, "generation_config.json"));
  }

  /** Bytes of the loaded weights by module (embed_tokens, attention, router, experts, ...) and held dtype. */
  weight_memory(): WeightMemory[] {
    return this.engine.weightStats();
  }

  private attentionLayers(request: boolean | number[] | undefined): number[] | undefined {
    if (request === undefined || request === false) return undefined;
    if (this.attn_implementation !== "eager") {
      throw new Error(
        `output_attentions needs attn_implementation: "eager" (this model was loaded with "${this.attn_implementation}", ` +
          "which does not materialise attention probabilities), as in transformers",
      );
    }
    const L = this.text_config.num_hidden_layers;
    const layers = request === true ? Array.from({ length: L }, (_, i) => i) : request;
    for (const l of layers) {
      if (!Number.isInteger(l) || l < 0 || l >= L) throw new Error(`output_attentions: layer ${l} does not exist (0..${L - 1})`);
    }
    return layers;
  }

  private expertOverride(mask: ExpertIntervention[]): Int8Array {
    const { num_hidden_layers: L, num_local_experts: E, moe_layers } = this.text_config;
    const table = new Int8Array(L * E);
    for (const item of mask) {
      if (!moe_layers.includes(item.layer)) {
        throw new Error(`expert_mask: layer ${item.layer} is not an MoE layer (MoE layers: ${moe_layers.join(", ")})`);
      }
      for (const [list, value] of [[item.disable ?? [], -1], [item.force ?? [], 1]] as const) {
        for (const e of list) {
          if (!Number.isInteger(e) || e < 0 || e >= E) throw new Error(`expert_mask: expert ${e} does not exist (0..${E - 1})`);
          table[item.layer * E + e] = value;
        }
      }
    }
    return table;
  }

  /** Image features for a forward call, checked against the <|patch|> tokens it places them at. */
  private async imageFeaturesFor(inputs: Llama4ForwardInputs, ids: Int32Array): Promise<Float32Array | undefined> {
    if (inputs.pixel_values === undefined && inputs.image_features === undefined) return undefined;
    if (inputs.pixel_values !== undefined && inputs.image_features !== undefined) {
      throw new Error("forward: pass pixel_values or image_features, not both");
    }
    const tokenId = this.imageTokenId("forward");
    const tokens = ids.reduce((n, id) => n + (id === tokenId ? 1 : 0), 0);
    // The count pixel_values will give is known before the vision tower runs: tiles x tokens per tile.
    const tiles = inputs.pixel_values === undefined ? undefined : this.pixelValuesTiles(inputs.pixel_values);
    const perTile = this.engine.info().vision?.tokensPerTile;
    if (tiles !== undefined && perTile !== undefined && tiles * perTile !== tokens) {
      throw new Error(
        `forward: image features and image tokens do not match: input_ids has ${tokens} image tokens (id ${tokenId}) ` +
          `but the images give ${tiles * perTile} features (${tiles} tiles x ${perTile})`,
      );
    }
    const features = inputs.image_features ?? (await this.embed_images(inputs.pixel_values!));
    const H = this.text_config.hidden_size;
    if (!(features instanceof Tensor) || features.dtype !== "float32" || features.dims.length !== 2 || features.dims[1] !== H) {
      throw new Error(`forward: image_features must be a float32 Tensor [image tokens, ${H}], got ${describeTensor(features)}`);
    }
    if (tokens !== features.dims[0]) {
      throw new Error(
        `forward: image features and image tokens do not match: input_ids has ${tokens} image tokens (id ${tokenId}) ` +
          `but the images give ${features.dims[0]} features`,
      );
    }
    return features.data as Float32Array;
  }

  /** The <|patch|> id that image features replace (config.image_token_id; multimodal checkpoints only). */
  get image_token_id(): number {
    return this.imageTokenId("image_token_id");
  }

  private imageTokenId(where: string): number {
    if (!(this.config instanceof Llama4Config)) {
      throw new Error(`${where}: ${this.name_or_path} is a text-only checkpoint (Llama4ForCausalLM layout, no vision_config); it cannot take images`);
    }
    return this.config.image_token_id;
  }

  /**
   * The vision tower and projector over pixel_values [tiles, 3, H, W]: one row per image token,
   * [tiles * tokens per tile, hidden_size], in the order of the <|patch|> tokens the processor writes.
   */
  async embed_images(pixel_values: Tensor): Promise<Tensor> {
    return (await this.encodeImages(pixel_values, false)).projected;
  }

  /** The tile count of pixel_values, after checking they are the processor's [tiles, 3, size, size]. */
  private pixelValuesTiles(pixel_values: Tensor): number {
    this.imageTokenId("pixel_values");
    const size = (this.config as Llama4Config).vision_config.image_size as number;
    if (!(pixel_values instanceof Tensor) || pixel_values.dtype !== "float32") {
      throw new Error(`pixel_values must be the processor's float32 Tensor [tiles, 3, ${size}, ${size}], got ${describeTensor(pixel_values)}`);
    }
    const [tiles, channels, height, width] = pixel_values.dims;
    if (pixel_values.dims.length !== 4 || channels !== 3 || height !== size || width !== size || tiles < 1) {
      throw new Error(
        `pixel_values must be [tiles, 3, ${size}, ${size}] (this model's vision image_size is ${size}), got [${pixel_values.dims.join(", ")}]`,
      );
    }
    return tiles;
  }

  protected async encodeImages(pixel_values: Tensor, withVision: boolean): Promise<{ projected: Tensor; vision?: Tensor }> {
    const tiles = this.pixelValuesTiles(pixel_values);
    const [, , height, width] = pixel_values.dims;
    const out = await this.engine.encodeImages({
      pixelValues: pixel_values.data as Float32Array, tiles, height, width, outputVisionFeatures: withVision,
    });
    const H = this.text_config.hidden_size;
    const result: { projected: Tensor; vision?: Tensor } = {
      projected: new Tensor("float32", out.imageFeatures, [out.imageFeatures.length / H, H]),
    };
    if (out.visionFeatures) {
      const dim = out.visionFeatures.length / (tiles * out.tokensPerTile);
      result.vision = new Tensor("float32", out.visionFeatures, [tiles, out.tokensPerTile, dim]);
    }
    return result;
  }

  /** Refuses a call whose activations and logits would not fit in memory, saying what they would need. */
  private checkForwardCost(rows: number, cols: number, keep: number): void {
    const t = this.text_config;
    const widest = Math.max(t.hidden_size, t.intermediate_size * t.num_experts_per_tok, t.intermediate_size_mlp, t.num_attention_heads * t.head_dim);
    // Logits of the kept positions, plus a few rows of the widest activation per token (f32).
    const logits = checkedProduct([rows, keep > 0 ? Math.min(keep, cols) : cols, t.vocab_size, 4], "forward: logits bytes");
    const activations = checkedProduct([rows, cols, widest, 4, 8], "forward: activation bytes");
    checkAffordable(logits + activations, `forward: input_ids of ${rows} x ${cols} tokens (logits and activations)`);
  }

  /** Runs the decoder; the classes below shape its outputs as their transformers namesakes do. */
  protected async run(inputs: Llama4ForwardInputs): Promise<Llama4CausalLMOutput> {
    if (!inputs || inputs.input_ids === undefined) throw new Error("forward: input_ids is required");
    checkOptions("forward", inputs, FORWARD_KEYS);
    const ids = toIdMatrix(inputs.input_ids, "input_ids");
    const past = cacheOption(inputs, "forward");
    const cache = past ? past : inputs.use_cache ? this.new_cache(ids.rows) : undefined;
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
    const attentionLayers = this.attentionLayers(inputs.output_attentions);
    const expertOverride = inputs.expert_mask ? this.expertOverride(inputs.expert_mask) : undefined;
    const keep = inputs.logits_to_keep ?? 0;
    if (!Number.isInteger(keep) || keep < 0) throw new Error(`logits_to_keep must be a non-negative integer, got ${keep}`);
    this.checkForwardCost(ids.rows, ids.cols, keep);
    // A loop, not Math.max(...): a large batch has more positions than the stack holds arguments.
    this.warnPastMaxPositions(positions ? positions.data.reduce((m, p) => Math.max(m, p), 0) + 1 : pastLength + ids.cols);
    // Last: the vision tower is the expensive part, so every other input is checked before it runs.
    const imageFeatures = await this.imageFeaturesFor(inputs, ids.data);

    const out = await this.engine.forward({
      inputIds: ids.data,
      batch: ids.rows,
      seqLen: ids.cols,
      attentionMask: mask?.data,
      positionIds: positions?.data,
      cache: cache?.native,
      outputHiddenStates: !!inputs.output_hidden_states,
      outputRouterLogits: !!inputs.output_router_logits,
      eagerAttention: this.attn_implementation === "eager",
      attentionLayers: attentionLayers ? Int32Array.from(attentionLayers) : undefined,
      expertOverride,
      logitsToKeep: keep,
      imageFeatures,
    });
    const V = this.text_config.vocab_size;
    const H = this.text_config.hidden_size;
    checkFinite(out.logits, V, out.kept, this.source_dir);
    const result: Llama4CausalLMOutput = {
      logits: new Tensor("float32", out.logits, [ids.rows, out.kept, V]),
      scratch_peak_bytes: out.scratchPeakBytes,
    };
    if (cache) Object.assign(result, { cache, past_key_values: cache });
    if (out.hiddenStates) {
      const per = ids.rows * ids.cols * H;
      result.hidden_states = Array.from({ length: this.text_config.num_hidden_layers + 1 }, (_, i) =>
        new Tensor("float32", out.hiddenStates!.subarray(i * per, (i + 1) * per), [ids.rows, ids.cols, H]),
      );
    }
    if (out.routerLogits) {
      const E = this.text_config.num_local_experts;
      const per = ids.rows * ids.cols * E;
      result.router_logits = (out.moeLayers ?? []).map(
        (_, i) => new Tensor("float32", out.routerLogits!.subarray(i * per, (i + 1) * per), [ids.rows * ids.cols, E]),
      );
      const K = this.text_config.num_experts_per_tok;
      const perK = ids.rows * ids.cols * K;
      result.router_experts = (out.moeLayers ?? []).map(
        (_, i) => new Tensor("int32", out.routerExperts!.subarray(i * perK, (i + 1) * perK), [ids.rows * ids.cols, K]),
      );
      result.router_scores = (out.moeLayers ?? []).map(
        (_, i) => new Tensor("float32", out.routerScores!.subarray(i * perK, (i + 1) * perK), [ids.rows * ids.cols, K]),
      );
      result.moe_layers = out.moeLayers;
    }
    if (attentionLayers && out.attentions) {
      const nH = this.text_config.num_attention_heads;
      const kv = pastLength + ids.cols;
      const per = ids.rows * nH * ids.cols * kv;
      result.attentions = attentionLayers.map(
        (_, i) => new Tensor("float32", out.attentions!.subarray(i * per, (i + 1) * per), [ids.rows, nH, ids.cols, kv]),
      );
      result.attention_layers = attentionLayers;
    }
    return result;
  }
}

/** Llama 4 text model with its language-modelling head (checkpoints with model.* / lm_head.*). */
export class Llama4ForCausalLM extends Llama4PreTrainedModel {
  async forward(inputs: Llama4ForwardInputs): Promise<Llama4CausalLMOutput> {
    return this.run(inputs);
  }

  /**
   * Runs the prompt once and records its routing at every MoE layer (and, on request, attention
   * maps and memory) as a GenerationTrace. Use generate({ output_trace }) to trace generated text too.
   */
  async trace(
    inputs: {
      input_ids: IdsInput;
      /** The processor's pixel_values for a prompt with images (multimodal checkpoints). */
      pixel_values?: Tensor;
      attention_mask?: IdsInput;
      expert_mask?: ExpertIntervention[];
      tokenizer?: { decode(ids: number[]): string };
    } & TraceOptions,
  ): Promise<GenerationTrace> {
    checkOptions("trace", inputs, ["input_ids", "pixel_values", "attention_mask", "expert_mask", "tokenizer", "attention_layers", "memory"]);
    const ids = toIdMatrix(inputs.input_ids, "input_ids");
    if (ids.rows !== 1) throw new Error(`trace: one sequence at a time (input_ids has ${ids.rows} rows)`);
    // The mask is accepted so that a processor's or tokenizer's output can be spread in; padding is not.
    if (inputs.attention_mask !== undefined && toIdMatrix(inputs.attention_mask, "attention_mask").data.some((m) => m !== 1)) {
      throw new Error("trace: the sequence must not be padded (attention_mask has zeros)");
    }
    const out = await this.forward({
      input_ids: [Array.from(ids.data)],
      pixel_values: inputs.pixel_values,
      output_router_logits: true,
      output_attentions: inputs.attention_layers,
      expert_mask: inputs.expert_mask,
      logits_to_keep: 1,
    });
    const withMemory = inputs.memory ?? true;
    const trace = new GenerationTrace(this.trace_model_info(), {
      weights: withMemory ? this.weight_memory() : undefined,
      interventions: inputs.expert_mask,
    });
    const decode = inputs.tokenizer ? (t: number[]) => inputs.tokenizer!.decode(t) : undefined;
    trace.append(stepFromOutput(out, Array.from(ids.data), 0, true, decode, withMemory ? this.memory_step(undefined, out) : undefined));
    return trace;
  }

  /**
   * transformers' generate(): greedy or sampled decoding with the KV cache. Returns the ids
   * [batch, prompt + new] (a GenerateOutput with return_dict_in_generate).
   */
  generate(options: GenerateOptions & { output_trace: true | TraceOptions }): Promise<GenerateOutput & { trace: GenerationTrace }>;
  generate(options: GenerateOptions & { return_dict_in_generate: true }): Promise<GenerateOutput>;
  generate(options: GenerateOptions): Promise<Tensor>;
  async generate(options: GenerateOptions): Promise<Tensor | GenerateOutput> {
    return generate(this, options);
  }
}

/**
 * The multimodal checkpoint layout (language_model.model.*, as Meta publishes Llama 4). Its text
 * path is the causal LM's, which it extends; images come with the vision tower.
 */
export class Llama4ForConditionalGeneration extends Llama4ForCausalLM {
  /** transformers' get_image_features: the vision model's output for pixel_values, [tiles, tokens per tile, vision_output_dim]
   * (before the multimodal projector). */
  async get_image_features(pixel_values: Tensor): Promise<Tensor> {
    return (await this.encodeImages(pixel_values, true)).vision!;
  }
}

export interface Llama4TextModelOutput {
  /** [batch, seq, hidden], after the final norm. */
  last_hidden_state: Tensor;
  cache?: DynamicCache;
  past_key_values?: DynamicCache;
  hidden_states?: Tensor[];
  router_logits?: Tensor[];
}

/** The decoder without its lm_head, as transformers' Llama4TextModel. */
export class Llama4TextModel extends Llama4PreTrainedModel {
  async forward(inputs: Llama4ForwardInputs): Promise<Llama4TextModelOutput> {
    if (inputs?.logits_to_keep !== undefined) throw new Error("forward: Llama4TextModel has no logits_to_keep (it returns hidden states)");
    // The engine reports every hidden state; the last one is last_hidden_state. One logits row is the least it computes.
    const out = await this.run({ ...inputs, output_hidden_states: true, logits_to_keep: 1 });
    const hidden = out.hidden_states!;
    const result: Llama4TextModelOutput = { last_hidden_state: hidden[hidden.length - 1] };
    if (out.cache) Object.assign(result, { cache: out.cache, past_key_values: out.cache });
    if (inputs.output_hidden_states) result.hidden_states = hidden;
    if (out.router_logits) result.router_logits = out.router_logits;
    return result;
  }
}
