// GenerationConfig: generation_config.json merged with call options; defaults as transformers'.
import { existsSync } from "node:fs";
import { join } from "node:path";

import { valueText } from "../utils/options";
import { JsonObject, readJsonFile } from "../configuration_utils";

const DEFAULTS = {
  max_length: 20,
  max_new_tokens: null as number | null,
  min_length: 0,
  min_new_tokens: null as number | null,
  do_sample: false,
  num_beams: 1,
  num_return_sequences: 1,
  temperature: 1.0,
  top_k: 50 as number | null,
  top_p: 1.0 as number | null,
  min_p: null as number | null,
  repetition_penalty: 1.0,
  bos_token_id: null as number | null,
  eos_token_id: null as number | number[] | null,
  pad_token_id: null as number | null,
  stop_strings: null as string | string[] | null,
  use_cache: true,
  /**
   * "dynamic" or "hybrid": the engine's cache is hybrid already (chunked-attention layers keep one chunk).
   * "quantized": an int8 KV cache (see cache_config), whatever the model's kv_cache_dtype.
   */
  cache_implementation: null as string | null,
  /**
   * With cache_implementation "quantized": `{ nbits: 8, backend? }`. The engine's quantized cache is its own int8 one
   * (kv_cache_dtype "int8": symmetric, one scale per head_dim elements of a token and head, every position quantized);
   * transformers' backends ("quanto", "HQQ") and their other options (nbits 2 / 4, q_group_size, residual_length) have
   * no counterpart and are refused.
   */
  cache_config: null as Record<string, unknown> | null,
  /** Feed the prompt through the model this many tokens at a time (bounds prefill memory). */
  prefill_chunk_size: null as number | null,
  return_dict_in_generate: false,
  output_scores: false,
  output_logits: false,
};

export type GenerationConfigFields = { -readonly [K in keyof typeof DEFAULTS]: (typeof DEFAULTS)[K] };
export const GENERATION_CONFIG_KEYS = Object.keys(DEFAULTS) as readonly string[];

export interface GenerationConfig extends GenerationConfigFields {}
export class GenerationConfig {
  [key: string]: unknown;

  constructor(values: JsonObject = {}) {
    Object.assign(this, DEFAULTS, values);
  }

  /** generation_config.json of a checkpoint directory (transformers' defaults when absent). */
  static from_dir(dir: string): GenerationConfig {
    const path = join(dir, "generation_config.json");
    const values = existsSync(path) ? readJsonFile(path) : {};
    const config = new GenerationConfig(values);
    const set = Object.keys(values).filter((k) => values[k] !== null && !k.startsWith("_") && k !== "transformers_version");
    Object.defineProperty(config, "fileKeys", { value: new Set(set), enumerable: false });
    return config;
  }

  /** The parameters the checkpoint's file sets (transformers' to_diff_dict): pipelines leave them alone. */
  setKeys(): Set<string> {
    return (this as unknown as { fileKeys?: Set<string> }).fileKeys ?? new Set();
  }

  /** A copy with `options` applied (keys already validated by the caller). */
  merged(options: JsonObject): GenerationConfig {
    const out = new GenerationConfig({ ...this });
    for (const [k, v] of Object.entries(options)) if (v !== undefined) out[k] = v;
    return out;
  }

  /** eos_token_id as a list (Llama 4 lists <|end_of_text|>, <|eom|>, <|eot|>). */
  eosTokenIds(): number[] {
    const e = this.eos_token_id;
    return e === null || e === undefined ? [] : Array.isArray(e) ? e : [e];
  }

  /** Rejects values transformers would reject, naming the option. */
  validate(): void {
    // null means "unset" (or "off", for top_k), except for these, which always hold a number.
    const required = ["max_length", "min_length", "num_return_sequences"];
    const posInt = (k: string, v: unknown, min = 1) => {
      if ((v !== null || required.includes(k)) && (!Number.isInteger(v) || (v as number) < min)) {
        throw new Error(`generate: ${k} must be an integer >= ${min}, got ${valueText(v)}`);
      }
    };
    posInt("max_new_tokens", this.max_new_tokens);
    posInt("max_length", this.max_length);
    posInt("min_new_tokens", this.min_new_tokens, 0);
    posInt("min_length", this.min_length, 0);
    posInt("top_k", this.top_k, 0);
    posInt("num_return_sequences", this.num_return_sequences);
    posInt("prefill_chunk_size", this.prefill_chunk_size);
    if (this.cache_implementation !== null && !["dynamic", "hybrid", "quantized"].includes(this.cache_implementation)) {
      throw new Error(`generate: cache_implementation "${this.cache_implementation}" is not supported ("dynamic", "hybrid" or "quantized")`);
    }
    this.validateCacheConfig();
    if (this.num_beams !== 1) throw new Error("generate: beam search (num_beams > 1) is not supported");
    if (!(typeof this.temperature === "number" && this.temperature > 0)) {
      throw new Error(`generate: temperature must be a positive number, got ${valueText(this.temperature)}`);
    }
    if (this.top_p !== null && !(this.top_p > 0 && this.top_p <= 1)) throw new Error(`generate: top_p must be in (0, 1], got ${this.top_p}`);
    if (this.min_p !== null && !(this.min_p >= 0 && this.min_p <= 1)) throw new Error(`generate: min_p must be in [0, 1], got ${this.min_p}`);
    if (!(this.repetition_penalty > 0)) throw new Error(`generate: repetition_penalty must be > 0, got ${this.repetition_penalty}`);
    for (const id of this.eosTokenIds()) posInt("eos_token_id", id, 0);
    if (this.num_return_sequences > 1 && !this.do_sample) {
      throw new Error("generate: num_return_sequences > 1 needs do_sample=true (greedy decoding would repeat the same sequence)");
    }
  }

  /** The KV cache dtype generate's own cache gets: "int8" for cache_implementation "quantized", else the model's. */
  kvCacheDtype(): "int8" | undefined {
    return this.cache_implementation === "quantized" ? "int8" : undefined;
  }

  private validateCacheConfig(): void {
    const given = this.cache_config;
    if (given === null) return;
    if (this.cache_implementation !== "quantized") {
      throw new Error(`generate: cache_config is only read with cache_implementation "quantized", got cache_implementation ${JSON.stringify(this.cache_implementation)}`);
    }
    if (typeof given !== "object" || Array.isArray(given)) {
      throw new Error(`generate: cache_config must be an object such as { nbits: 8 }, got ${JSON.stringify(given)}`);
    }
    for (const [key, value] of Object.entries(given)) {
      if (key === "backend") continue;  // transformers' quantization library: the engine has its own int8 cache
      if (key === "nbits" && value === 8) continue;
      throw new Error(`generate: cache_config.${key} = ${JSON.stringify(value)} is not supported: the quantized KV cache holds int8 ` +
        "with one scale per head_dim elements of each token and head (cache_config { nbits: 8 }); every position is quantized");
    }
  }
}
