// generate(): transformers' GenerationMixin.generate for decoder-only Llama 4 - greedy or sampled
// decoding over the KV cache with logits processors, stopping criteria and streamers.
import { cacheOption, DynamicCache, type Llama4ForCausalLM, type IdsInput } from "../models/llama4/modeling_llama4";
import { Tensor, toIdMatrix } from "../tensor";
import { checkOptions, describe } from "../utils/options";
import { globalRandom, Random } from "../utils/random";
import { GenerationConfig, GENERATION_CONFIG_KEYS } from "./configuration_utils";
import {
  LogitsProcessor,
  MinLengthLogitsProcessor,
  MinPLogitsWarper,
  RepetitionPenaltyLogitsProcessor,
  softmax,
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
} from "./logits_process";
import { EosTokenCriteria, MaxLengthCriteria, StopStringCriteria, StoppingCriteria, TokenDecoder } from "./stopping_criteria";
import { BaseStreamer } from "./streamers";
import { checkAffordable, checkedProduct } from "../utils/sizes";
import { ExpertIntervention, GenerationTrace, stepFromOutput, TraceOptions } from "../trace";

export interface GenerateOptions extends Partial<Omit<GenerationConfig, "eosTokenIds" | "merged" | "validate" | "setKeys">> {
  input_ids: IdsInput;
  attention_mask?: IdsInput;
  /** Overrides the model's generation_config as a whole (call options still apply on top). */
  generation_config?: GenerationConfig;
  streamer?: BaseStreamer;
  /** Needed for stop_strings, as in transformers. */
  tokenizer?: TokenDecoder;
  /** Extra processors, applied after the built-in ones. */
  logits_processor?: LogitsProcessor[];
  stopping_criteria?: StoppingCriteria[];
  /** A private random source for sampling (default: the one set_seed seeds). */
  generator?: Random;
  /** Record routing (and optionally attention and memory) of prompt and generated tokens; implies a dict output with `trace`. */
  output_trace?: boolean | TraceOptions;
  /** Expert interventions applied at every step (see Llama4ForwardInputs.expert_mask). */
  expert_mask?: ExpertIntervention[];
  /** The processor's pixel_values for the <|patch|> tokens of the prompt (multimodal checkpoints). */
  pixel_values?: Tensor;
  /** A cache holding the first columns of input_ids, e.g. the previous chat turn's (GenerateOutput.cache):
   * input_ids is still the whole sequence, and only its columns past the cache are prefilled. It is extended in place. */
  cache?: DynamicCache;
  /** The same, by its older name (a deprecated alias in transformers 5.24). */
  past_key_values?: DynamicCache;
  /** Or image features already projected (see Llama4ForConditionalGeneration.embed_images). */
  image_features?: Tensor;
}

export interface GenerateOutput {
  sequences: Tensor;
  /** Processed scores of each step, [batch, vocab] each (output_scores). */
  scores?: Tensor[];
  /** Raw logits of each step, [batch, vocab] each (output_logits). */
  logits?: Tensor[];
  /** With output_trace. */
  trace?: GenerationTrace;
  /** The cache after generation (every token but the last generated one, as in transformers): pass it to
   * the next generate call together with the longer input_ids. past_key_values is the same, by its older name. */
  cache?: DynamicCache;
  past_key_values?: DynamicCache;
}

const CALL_KEYS = ["input_ids", "attention_mask", "generation_config", "streamer", "tokenizer", "logits_processor",
  "stopping_criteria", "generator", "output_trace", "expert_mask", "pixel_values", "image_features", "cache", "past_key_values"] as const;

export async function generate(model: Llama4ForCausalLM, options: GenerateOptions): Promise<Tensor | GenerateOutput> {
  const streamer = options?.streamer as unknown;
  if (streamer !== undefined && streamer !== null) {
    const s = streamer as Record<string, unknown>;
    if (typeof streamer !== "object" || typeof s.put !== "function" || typeof s.end !== "function") {
      throw new TypeError(`generate: streamer must be an object with put() and end() methods (a TextStreamer, say), got ${describe(streamer)}`);
    }
  }
  try {
    return await generateWithStreamer(model, options);
  } catch (err) {
    // A generate that fails, at any point, or is cancelled still ends its streamer, so a consumer
    // iterating it is not left waiting.
    const streamer = options?.streamer;
    if (streamer) (streamer.on_error ?? streamer.end).call(streamer, err);
    throw err;
  }
}

async function generateWithStreamer(model: Llama4ForCausalLM, options: GenerateOptions): Promise<Tensor | GenerateOutput> {
  if (!options || options.input_ids === undefined) throw new Error("generate: input_ids is required");
  checkOptions("generate", options, [...GENERATION_CONFIG_KEYS, ...CALL_KEYS]);
  const configOptions = Object.fromEntries(Object.entries(options).filter(([k]) => GENERATION_CONFIG_KEYS.includes(k)));
  const config = (options.generation_config ?? model.generation_config).merged(configOptions);
  config.validate();

  const ids = toIdMatrix(options.input_ids, "input_ids");
  const mask = options.attention_mask === undefined ? null : toIdMatrix(options.attention_mask, "attention_mask");
  if (mask && (mask.rows !== ids.rows || mask.cols !== ids.cols)) {
    throw new Error(`generate: attention_mask [${mask.rows}, ${mask.cols}] must match input_ids [${ids.rows}, ${ids.cols}]`);
  }
  if (ids.rows === 0 || ids.cols === 0) throw new Error("generate: empty input: input_ids needs at least one token per row");
  const repeat = config.num_return_sequences;
  // Each sequence gets its own row of ids, logits and cache: price them before building anything.
  const sequenceCount = checkedProduct([ids.rows, repeat], "generate: input_ids rows x num_return_sequences");
  checkAffordable(checkedProduct([sequenceCount, model.text_config.vocab_size, 8], "generate: logits bytes"),
    `generate: ${sequenceCount} sequences (${ids.rows} input_ids rows x num_return_sequences ${repeat}), their logits alone,`);
  const rows: number[][] = [];
  const maskRows: number[][] = [];
  for (let b = 0; b < ids.rows; b++) {
    for (let r = 0; r < repeat; r++) {
      rows.push(Array.from(ids.data.subarray(b * ids.cols, (b + 1) * ids.cols)));
      maskRows.push(mask ? Array.from(mask.data.subarray(b * ids.cols, (b + 1) * ids.cols)) : new Array(ids.cols).fill(1));
    }
  }
  const B = rows.length;
  const promptLength = ids.cols;

  const eos = config.eosTokenIds();
  const pad = config.pad_token_id ?? eos[0] ?? 0;
  const maxLength = config.max_new_tokens !== null ? promptLength + config.max_new_tokens
    : options.max_length !== undefined || model.generation_config.max_length !== 20 ? config.max_length
    : promptLength + 20; // transformers' default: 20 new tokens
  if (maxLength <= promptLength) {
    throw new Error(`generate: the prompt is already ${promptLength} tokens and max_length is ${maxLength}; set max_new_tokens`);
  }
  const minLength = config.min_new_tokens !== null ? promptLength + config.min_new_tokens : config.min_length;

  const processors: LogitsProcessor[] = [];
  if (config.repetition_penalty !== 1.0) {
    const leftPadding = maskRows.map((m) => Math.max(0, m.indexOf(1)));
    processors.push(new RepetitionPenaltyLogitsProcessor(config.repetition_penalty, leftPadding));
  }
  if (minLength > 0 && eos.length) processors.push(new MinLengthLogitsProcessor(minLength, eos));
  if (config.do_sample) {
    if (config.temperature !== 1.0) processors.push(new TemperatureLogitsWarper(config.temperature));
    if (config.top_k !== null && config.top_k !== 0) processors.push(new TopKLogitsWarper(config.top_k));
    if (config.top_p !== null && config.top_p < 1.0) processors.push(new TopPLogitsWarper(config.top_p));
    if (config.min_p !== null) processors.push(new MinPLogitsWarper(config.min_p));
  }
  processors.push(...userHooks(options.logits_processor, "logits_processor", "process"));

  const criteria: StoppingCriteria[] = [new MaxLengthCriteria(maxLength)];
  if (eos.length) criteria.push(new EosTokenCriteria(eos));
  if (config.stop_strings !== null) {
    if (!options.tokenizer) throw new Error("generate: stop_strings needs the tokenizer: generate({ ..., stop_strings, tokenizer })");
    criteria.push(new StopStringCriteria(options.tokenizer, config.stop_strings));
  }
  criteria.push(...userHooks(options.stopping_criteria, "stopping_criteria", "done"));

  const streamer = options.streamer;
  if (streamer && B > 1) throw new Error("generate: streamers only support a batch of one sequence");
  const random = options.generator ?? globalRandom;
  if (typeof (random as Partial<Random>)?.next !== "function") {
    throw new TypeError(`generate: generator must be a Random (new Random(seed)), got ${describe(options.generator)}`);
  }
  const V = model.text_config.vocab_size;
  const scoresOut: Tensor[] = [];
  const logitsOut: Tensor[] = [];
  const unfinished = new Array<boolean>(B).fill(true);
  // Positions count real tokens only (cumsum(mask) - 1), as transformers' generate computes them.
  const nextPosition = maskRows.map((m) => m.reduce((a, v) => a + v, 0));
  const positions = maskRows.map((m) => {
    let seen = 0;
    return m.map((v) => Math.max(0, (seen += v) - 1));
  });

  // Tracing records batch row 0 after every forward call.
  const traceOptions: TraceOptions | null = options.output_trace ? (options.output_trace === true ? {} : options.output_trace) : null;
  if (traceOptions && B !== 1) throw new Error(`generate: output_trace traces one sequence (this call has ${B})`);
  const withMemory = traceOptions?.memory ?? true;
  const trace = traceOptions
    ? new GenerationTrace(model.trace_model_info(), { weights: withMemory ? model.weight_memory() : undefined, interventions: options.expert_mask })
    : null;
  const decode = options.tokenizer ? (t: number[]) => options.tokenizer!.decode(t) : undefined;
  const traced = {
    output_router_logits: !!trace,
    output_attentions: traceOptions?.attention_layers,
    expert_mask: options.expert_mask,
  };
  const record = (out: Awaited<ReturnType<typeof model.forward>>, fed: number[], past: number, isPrompt: boolean) =>
    trace?.append(stepFromOutput(out, fed, past, isPrompt, decode, withMemory ? model.memory_step(cache, out) : undefined));

  const given = cacheOption(options, "generate");
  if (given !== undefined && !(given instanceof DynamicCache)) {
    throw new TypeError(`generate: the cache must be a DynamicCache (model.new_cache() or a previous generate's), got ${describe(given)}`);
  }
  const cachedLength = given ? given.get_seq_length() : 0;
  if (cachedLength >= promptLength) {
    throw new Error(
      `generate: the cache already holds ${cachedLength} tokens but input_ids has ${promptLength}: input_ids must be the whole ` +
        "sequence (the cached tokens first) with at least one token more",
    );
  }
  if (given && given.native.batch !== B) {
    throw new Error(
      `generate: the cache holds ${given.native.batch} rows but this call generates ${B} ` +
        `(${ids.rows} rows of input_ids x num_return_sequences ${repeat})`,
    );
  }
  if (given && cachedLength > 0 && options.output_trace) {
    throw new Error("generate: output_trace records a whole sequence; it cannot start from a cache that already holds tokens");
  }
  const cache = given ?? model.new_cache(B, config.kvCacheDtype());
  // cancel() stops the native call in flight; one made between two steps (from a streamer, say) is seen here.
  const cancelsAtStart = model.cancel_count;
  const stopIfCancelled = () => {
    if (model.cancel_count === cancelsAtStart) return;
    throw Object.assign(new Error("cancelled"), { name: "AbortError", code: "ABORT_ERR" });
  };
  // The prompt's image features, one block per row (rows repeated by num_return_sequences repeat theirs).
  const images = await promptImageFeatures(model, options, rows, repeat, cachedLength);

  streamer?.put(rows[0].slice());
  // The prompt, in pieces of prefill_chunk_size tokens if asked (only the last piece's logits are used).
  const piece = config.prefill_chunk_size ?? promptLength;
  let step!: Awaited<ReturnType<typeof model.forward>>;
  for (let start = cachedLength; start < promptLength; start += piece) {
    const end = Math.min(promptLength, start + piece);
    stopIfCancelled();
    step = await model.forward({
      input_ids: rows.map((r) => r.slice(start, end)),
      attention_mask: maskRows.map((m) => m.slice(0, end)),
      position_ids: positions.map((p) => p.slice(start, end)),
      past_key_values: cache,
      logits_to_keep: 1,
      ...(images ? { image_features: images.forPiece(start, end) } : {}),
      ...traced,
    });
    record(step, rows[0].slice(start, end), start, true);
  }
  for (let n = 0; ; n++) {
    const logits = step.logits.data as Float32Array;
    const scores = Array.from({ length: B }, (_, b) => logits.slice(b * V, (b + 1) * V));
    if (config.output_logits) logitsOut.push(stack(scores, V));
    for (const p of processors) p.process(rows, scores);
    checkScores(scores, processors);
    if (config.output_scores) scoresOut.push(stack(scores, V));

    const next = scores.map((row, b) => (!unfinished[b] ? pad : config.do_sample ? sample(row, random) : argmax(row)));
    next.forEach((token, b) => {
      rows[b].push(token);
      maskRows[b].push(1);
    });
    streamer?.put([next[0]]);
    for (const c of criteria) doneFlags(c, rows, promptLength, B).forEach((d, b) => (unfinished[b] = unfinished[b] && !d));
    const feed = () => {
      stopIfCancelled();
      return model.forward({
        input_ids: next.map((t) => [t]),
        attention_mask: maskRows,
        position_ids: nextPosition.map((p) => [p + n]),
        past_key_values: cache,
        logits_to_keep: 1,
        ...traced,
      });
    };
    if (!unfinished.some(Boolean)) {
      // A trace also covers the last generated token: run it through the model once more.
      if (trace) record(await feed(), [next[0]], rows[0].length - 1, false);
      break;
    }
    const past = cache.get_seq_length();
    step = await feed();
    record(step, [next[0]], past, false);
  }
  streamer?.end();

  const sequences = new Tensor("int32", Int32Array.from(rows.flat()), [B, rows[0].length]);
  if (!config.return_dict_in_generate && !trace) return sequences;
  const out: GenerateOutput = { sequences, cache, past_key_values: cache };
  if (trace) out.trace = trace;
  if (config.output_scores) out.scores = scoresOut;
  if (config.output_logits) out.logits = logitsOut;
  return out;
}

/**
 * Splits the prompt's image features (from pixel_values, or given) by row: a row's <|patch|> tokens
 * take the next features in order, as transformers' masked_scatter does over the whole batch.
 * forPiece gives the features of the tokens in prompt columns [start, end) of every row, so a
 * prompt prefilled in pieces gets each feature exactly once. Columns before `fromColumn` are in the
 * cache already: their images were seen, and the features given are those of the later columns only.
 */
async function promptImageFeatures(model: Llama4ForCausalLM, options: GenerateOptions, rows: number[][], repeat: number, fromColumn: number) {
  if (options.pixel_values === undefined && options.image_features === undefined) return null;
  if (options.pixel_values !== undefined && options.image_features !== undefined) {
    throw new Error("generate: pass pixel_values or image_features, not both");
  }
  const tokenId = model.image_token_id;
  const features = options.image_features ?? (await model.embed_images(options.pixel_values!));
  const H = model.text_config.hidden_size;
  if (!(features instanceof Tensor) || features.dtype !== "float32" || features.dims.length !== 2 || features.dims[1] !== H) {
    throw new Error(`generate: image_features must be a float32 Tensor [image tokens, ${H}]`);
  }
  // Rows were repeated num_return_sequences (`repeat`) times in a row; each distinct prompt owns a block.
  const counts = rows.map((r) => r.slice(fromColumn).filter((id) => id === tokenId).length);
  const blockStart: number[] = [];
  let total = 0;
  for (let r = 0; r < rows.length; r++) {
    if (r % repeat === 0) {
      blockStart.push(total);
      total += counts[r];
    } else blockStart.push(blockStart[r - 1]);
  }
  if (total !== features.dims[0]) {
    throw new Error(
      `generate: image features and image tokens do not match: the prompt has ${total} image tokens (id ${tokenId})` +
        `${fromColumn > 0 ? " past the cache (give the pixel_values of the new images only)" : ""} but the images give ${features.dims[0]} features`,
    );
  }
  const data = features.data as Float32Array;
  return {
    forPiece(start: number, end: number): Tensor | undefined {
      const picked: number[] = [];
      rows.forEach((row, r) => {
        let before = row.slice(fromColumn, start).filter((id) => id === tokenId).length;
        for (let t = start; t < end; t++) if (row[t] === tokenId) picked.push(blockStart[r] + before++);
      });
      if (picked.length === 0) return undefined;
      const out = new Float32Array(picked.length * H);
      picked.forEach((f, i) => out.set(data.subarray(f * H, (f + 1) * H), i * H));
      return new Tensor("float32", out, [picked.length, H]);
    },
  };
}

function stack(rows: Float32Array[], V: number): Tensor {
  const data = new Float32Array(rows.length * V);
  rows.forEach((r, b) => data.set(r, b * V));
  return new Tensor("float32", data, [rows.length, V]);
}

/** The first index of the largest score, as torch.argmax. */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** One draw from softmax(row), as torch.multinomial on the softmax probabilities. */
function sample(row: Float32Array, random: Random): number {
  const probs = softmax(row);
  let u = random.next();
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i];
    if (u < 0) return i;
  }
  // rounding left a sliver: the last token with non-zero probability
  for (let i = probs.length - 1; i >= 0; i--) if (probs[i] > 0) return i;
  return 0;
}

/** The user's logits processors or stopping criteria, checked to have the method generate calls, each wrapped so
 * that an error thrown inside names which one it was. */
function userHooks<T extends object>(list: T[] | undefined, option: string, method: "process" | "done"): T[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new TypeError(`generate: ${option} must be an array, got ${describe(list)}`);
  return list.map((hook, i) => {
    const fn = (hook as Record<string, unknown> | null)?.[method];
    if (typeof fn !== "function") {
      throw new TypeError(`generate: ${option}[${i}] must be an object with a ${method}() method, got ${describe(hook)}`);
    }
    const wrapped = Object.create(hook) as Record<string, unknown>;
    wrapped[method] = (...args: unknown[]) => {
      try {
        return (fn as (...a: unknown[]) => unknown).apply(hook, args);
      } catch (err) {
        throw new Error(`generate: ${option}[${i}] (${describe(hook)}) threw: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
    };
    return wrapped as T;
  });
}

/** A stopping criterion's answer, checked to be one flag per row. */
function doneFlags(c: StoppingCriteria, rows: number[][], promptLength: number, B: number): boolean[] {
  const flags = c.done(rows, promptLength) as unknown;
  if (!Array.isArray(flags) || flags.length !== B) {
    throw new TypeError(`generate: stopping criterion ${describe(c)} returned ${describe(flags)}, not one boolean per row (${B})`);
  }
  return flags as boolean[];
}

/** The logits are finite (forward checks them), so NaN or +infinity in the scores comes from a processor: the token
 * picked from them would be arbitrary. -infinity is how warpers mask tokens, as in transformers. */
function checkScores(scores: Float32Array[], processors: LogitsProcessor[]): void {
  for (let b = 0; b < scores.length; b++) {
    const row = scores[b];
    for (let i = 0; i < row.length; i++) {
      if (Number.isNaN(row[i]) || row[i] === Infinity) {
        const names = processors.map((p) => describe(p));
        throw new Error(`generate: the scores of row ${b} hold ${row[i]} at token ${i} after the logits processors (${names.join(", ")}): ` +
          "a user logits_processor or the sampling options (temperature, top_k, top_p, min_p, repetition_penalty) made them");
      }
    }
  }
}
