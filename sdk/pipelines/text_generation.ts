// TextGenerationPipeline, as transformers' pipelines/text_generation.py: a string, a chat (a list
// of messages) or a batch of either in; generated_text records out, in transformers' shapes.
import { GENERATION_CONFIG_KEYS } from "../generation/configuration_utils";
import { GenerateOptions } from "../generation/utils";
import type { Llama4ForCausalLM } from "../models/llama4/modeling_llama4";
import { Tensor } from "../tensor";
import { checkOptions } from "../utils/options";

export interface ChatMessage {
  role: string;
  content: string | { type: string; [key: string]: unknown }[];
  [key: string]: unknown;
}
export type Chat = ChatMessage[];
export type TextGenerationInput = string | Chat;

/** What the pipeline needs of a tokenizer. */
export interface PipelineTokenizer {
  pad_token_id: number | null;
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  apply_chat_template(messages: Chat, options: Record<string, unknown>): unknown;
  encodeForGeneration?(text: string, options: Record<string, unknown>): unknown;
}

export interface TextGenerationOptions extends Omit<GenerateOptions, "input_ids" | "attention_mask"> {
  /** Return the prompt followed by the new text (default) or only the new text. */
  return_full_text?: boolean;
  /** A chat ending with an assistant message is continued rather than answered (default: inferred). */
  continue_final_message?: boolean;
  skip_special_tokens?: boolean;
  add_special_tokens?: boolean;
  prefix?: string;
  tools?: unknown[];
}

export interface GeneratedRecord {
  generated_text: string | Chat;
}

const PIPELINE_KEYS = ["return_full_text", "continue_final_message", "skip_special_tokens", "add_special_tokens", "prefix", "tools"] as const;
const GENERATE_EXTRA_KEYS = ["generation_config", "streamer", "logits_processor", "stopping_criteria", "generator"] as const;
// transformers' pipeline defaults for what neither the caller nor the checkpoint's generation_config sets.
const PIPELINE_GENERATION_DEFAULTS: Record<string, unknown> = { max_new_tokens: 256, do_sample: true, temperature: 0.7 };
const SAMPLING_KEYS = new Set(["temperature", "top_k", "top_p", "min_p"]);

/**
 * The generate() options of a pipeline call: the caller's (minus the pipeline's own keys), plus the
 * task's defaults for what neither the caller nor the checkpoint's generation_config sets (sampling
 * defaults only when sampling ends up on), plus the tokenizer's pad token.
 */
export function pipelineGenerationOptions(
  model: Llama4ForCausalLM,
  padTokenId: number | null,
  options: object,
  pipelineKeys: readonly string[],
  defaults: Record<string, unknown>,
): Record<string, unknown> {
  const user: Record<string, unknown> = Object.fromEntries(Object.entries(options).filter(([k]) => !pipelineKeys.includes(k)));
  const set = new Set([...model.generation_config.setKeys(), ...Object.keys(user)]);
  const added: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(defaults)) {
    if (!set.has(k) && !(k === "max_new_tokens" && set.has("max_length"))) added[k] = v;
  }
  const sampling = { ...Object.fromEntries([...set].map((k) => [k, user[k] ?? model.generation_config[k]])), ...added }.do_sample;
  if (!sampling) for (const k of Object.keys(added)) if (SAMPLING_KEYS.has(k)) delete added[k];
  if (padTokenId !== null && !set.has("pad_token_id")) added.pad_token_id = padTokenId;
  return { ...user, ...added };
}

function isChat(value: unknown): value is Chat {
  return Array.isArray(value) && value.length > 0 && typeof value[0] === "object" && value[0] !== null && !Array.isArray(value[0]);
}

function validateChat(chat: Chat, where: string): void {
  chat.forEach((m, i) => {
    if (typeof m !== "object" || m === null) throw new Error(`${where}: message ${i} is not an object`);
    if (typeof m.role !== "string" || m.role.length === 0) throw new Error(`${where}: message ${i} has no "role"`);
    if (m.content === undefined || m.content === null) throw new Error(`${where}: message ${i} (${m.role}) has no "content"`);
  });
}

export class TextGenerationPipeline {
  readonly task = "text-generation";

  constructor(readonly model: Llama4ForCausalLM, readonly tokenizer: PipelineTokenizer & ((text: string, options: Record<string, unknown>) => unknown)) {}

  /**
   * pipe(text | chat | batch, options): one list of records per input (a batch returns a list
   * of such lists), as transformers does. Inputs of a batch run one after another.
   */
  async _call(inputs: TextGenerationInput | TextGenerationInput[], options: TextGenerationOptions = {}): Promise<GeneratedRecord[] | GeneratedRecord[][]> {
    checkOptions("text-generation pipeline", options, [...PIPELINE_KEYS, ...GENERATION_CONFIG_KEYS, ...GENERATE_EXTRA_KEYS, "tokenizer"]);
    if (typeof inputs === "string" || isChat(inputs)) return this.one(inputs, options);
    if (!Array.isArray(inputs) || inputs.length === 0) {
      throw new Error("text-generation pipeline: expected a string, a chat (list of {role, content}) or a non-empty list of those");
    }
    const out: GeneratedRecord[][] = [];
    for (const item of inputs) {
      if (typeof item !== "string" && !isChat(item)) throw new Error("text-generation pipeline: each batch item must be a string or a chat");
      out.push(await this.one(item, options));
    }
    return out;
  }

  private generationOptions(options: TextGenerationOptions): Record<string, unknown> {
    return pipelineGenerationOptions(this.model, this.tokenizer.pad_token_id, options, PIPELINE_KEYS, PIPELINE_GENERATION_DEFAULTS);
  }

  private async one(prompt: TextGenerationInput, options: TextGenerationOptions): Promise<GeneratedRecord[]> {
    let encoded: { input_ids: Tensor; attention_mask: Tensor };
    let continueFinal = options.continue_final_message;
    if (typeof prompt === "string") {
      const extra = options.add_special_tokens === undefined ? {} : { add_special_tokens: options.add_special_tokens };
      encoded = this.tokenizer((options.prefix ?? "") + prompt, { return_tensors: "pt", ...extra }) as typeof encoded;
    } else {
      validateChat(prompt, "text-generation pipeline");
      if (continueFinal === undefined) continueFinal = prompt[prompt.length - 1].role === "assistant";
      encoded = this.tokenizer.apply_chat_template(prompt, {
        add_generation_prompt: !continueFinal,
        continue_final_message: continueFinal,
        return_dict: true,
        return_tensors: "pt",
        ...(options.tools ? { tools: options.tools } : {}),
      }) as typeof encoded;
    }
    const sequences = (await this.model.generate({
      ...(this.generationOptions(options) as GenerateOptions),
      input_ids: encoded.input_ids,
      attention_mask: encoded.attention_mask,
    })) as Tensor;
    const promptLength = encoded.input_ids.dims[1];
    const [rows, width] = sequences.dims;
    const records: GeneratedRecord[] = [];
    for (let r = 0; r < rows; r++) {
      const generated = Array.from(sequences.data.subarray(r * width + promptLength, (r + 1) * width));
      const text = this.tokenizer.decode(generated, { skip_special_tokens: options.skip_special_tokens ?? true });
      if (options.return_full_text === false) {
        records.push({ generated_text: text });
      } else if (typeof prompt === "string") {
        records.push({ generated_text: prompt + text });
      } else if (continueFinal) {
        const last = prompt[prompt.length - 1];
        records.push({ generated_text: [...prompt.slice(0, -1), { role: last.role, content: `${last.content as string}${text}` }] });
      } else {
        records.push({ generated_text: [...prompt, { role: "assistant", content: text }] });
      }
    }
    return records;
  }
}
