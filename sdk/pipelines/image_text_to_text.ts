// ImageTextToTextPipeline, as transformers' pipelines/image_text_to_text.py: a chat whose messages
// carry images, images with a text that has an <|image|> per image, or text alone; records with
// input_text and generated_text out, in transformers' shapes.
import { GENERATION_CONFIG_KEYS } from "../generation/configuration_utils";
import { GenerateOptions } from "../generation/utils";
import type { ImageInput } from "../image_utils";
import type { Llama4ForConditionalGeneration } from "../models/llama4/modeling_llama4";
import type { BatchFeature, Llama4Processor, ProcessorKwargs } from "../models/llama4/processing_llama4";
import { Tensor } from "../tensor";
import type { ChatMessage } from "../tokenization_utils";
import { checkOptions, describe } from "../utils/options";
import { pipelineGenerationOptions } from "./text_generation";

export interface ImageTextToTextOptions extends Omit<GenerateOptions, "input_ids" | "attention_mask" | "pixel_values" | "image_features"> {
  /** The text when the first argument is the image(s), as Python's pipe(image, text=...); with no
   * images (pipe(null, { text })), the model continues the text alone. */
  text?: string;
  /** Options of the processor call, e.g. `{ max_patches: 1 }`. */
  processor_kwargs?: ProcessorKwargs;
  /** Seconds to wait for each image URL. */
  timeout?: number;
  /** Return the prompt followed by the new text (default) or only the new text. */
  return_full_text?: boolean;
  /** A chat ending with an assistant message is continued rather than answered (default: inferred). */
  continue_final_message?: boolean;
  skip_special_tokens?: boolean;
}

export interface ImageTextToTextRecord {
  input_text: string | ChatMessage[];
  generated_text: string | ChatMessage[];
}

/** What the pipeline accepts: a chat, {images, text} (images may be null), or image(s) with options.text. */
export type ImageTextToTextInput = ChatMessage[] | { images?: ImageInput | ImageInput[] | null; text: string } | ImageInput | ImageInput[];

const PIPELINE_KEYS = ["text", "return_full_text", "continue_final_message", "skip_special_tokens", "processor_kwargs", "timeout"] as const;
const GENERATE_EXTRA_KEYS = ["generation_config", "streamer", "logits_processor", "stopping_criteria", "generator"] as const;
// transformers' default for this task when neither the caller nor the checkpoint sets it.
const PIPELINE_GENERATION_DEFAULTS: Record<string, unknown> = { max_new_tokens: 256 };

function isPair(value: unknown): value is { images?: ImageInput | ImageInput[] | null; text: string } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) && "text" in value;
}

function isChat(value: unknown): value is ChatMessage[] {
  return Array.isArray(value) && value.length > 0 && typeof value[0] === "object" && value[0] !== null &&
    !Array.isArray(value[0]) && "role" in value[0];
}

export class ImageTextToTextPipeline {
  readonly task = "image-text-to-text";

  constructor(readonly model: Llama4ForConditionalGeneration, readonly processor: Llama4Processor) {}

  get tokenizer() {
    return this.processor.tokenizer;
  }

  /**
   * pipe(chat | {images, text} | image, options): a list of records, as transformers returns for one
   * input; a list of chats or of {images, text} gives one such list per item (run one after another).
   * pipe(null, { text }) continues a text with no image.
   */
  async _call(inputs: ImageTextToTextInput | ImageTextToTextInput[] | null | undefined, options: ImageTextToTextOptions = {}): Promise<ImageTextToTextRecord[] | ImageTextToTextRecord[][]> {
    checkOptions("image-text-to-text pipeline", options, [...PIPELINE_KEYS, ...GENERATION_CONFIG_KEYS, ...GENERATE_EXTRA_KEYS, "tokenizer"]);
    if (inputs === undefined || inputs === null) {
      if (typeof options.text !== "string") throw new Error("image-text-to-text pipeline: you must provide a chat, or images and text, or text");
      return this.one({ images: null, text: options.text }, { ...options, text: undefined });
    }
    if (Array.isArray(inputs) && inputs.length > 0 && (isChat(inputs[0]) || isPair(inputs[0]))) {
      const out: ImageTextToTextRecord[][] = [];
      for (const item of inputs as ImageTextToTextInput[]) out.push(await this.one(item, options));
      return out;
    }
    return this.one(inputs as ImageTextToTextInput, options);
  }

  private async one(inputs: ImageTextToTextInput, options: ImageTextToTextOptions): Promise<ImageTextToTextRecord[]> {
    if (isChat(inputs)) {
      if (options.text !== undefined) {
        throw new Error("image-text-to-text pipeline: a chat carries its own text; put images inside the messages' content, e.g. {type: \"image\", url}");
      }
      return this.chat(inputs, options);
    }
    let images: ImageInput | ImageInput[] | null | undefined;
    let text: string | undefined;
    if (isPair(inputs)) {
      ({ images, text } = inputs);
    } else {
      images = inputs as ImageInput | ImageInput[];
      text = options.text;
    }
    if (typeof text !== "string") throw new Error(`image-text-to-text pipeline: you must provide text for the images (got ${describe(text)})`);
    const encoded = await this.processor({ ...options.processor_kwargs, ...this.loadImageOptions(options), text, images, return_tensors: "pt" });
    return this.records(encoded, text, options, false);
  }

  private async chat(messages: ChatMessage[], options: ImageTextToTextOptions): Promise<ImageTextToTextRecord[]> {
    messages.forEach((m, i) => {
      if (typeof m.role !== "string" || m.role.length === 0) throw new Error(`image-text-to-text pipeline: message ${i} has no "role"`);
      if (m.content === undefined || m.content === null) throw new Error(`image-text-to-text pipeline: message ${i} (${m.role}) has no "content"`);
    });
    const continueFinal = options.continue_final_message ?? messages[messages.length - 1].role === "assistant";
    const encoded = await this.processor.apply_chat_template(messages, {
      add_generation_prompt: !continueFinal,
      continue_final_message: continueFinal,
      tokenize: true,
      return_dict: true,
      return_tensors: "pt",
      processor_kwargs: { ...options.processor_kwargs, ...this.loadImageOptions(options) },
    });
    return this.records(encoded, messages, options, continueFinal);
  }

  /** The pipeline's `timeout` as the processor's image-loading option. */
  private loadImageOptions(options: ImageTextToTextOptions): { load_image_options?: ProcessorKwargs["load_image_options"] } {
    if (options.timeout === undefined) return {};
    return { load_image_options: { ...options.processor_kwargs?.load_image_options, timeout: options.timeout } };
  }

  private generationOptions(options: ImageTextToTextOptions): Record<string, unknown> {
    return pipelineGenerationOptions(this.model, this.tokenizer.pad_token_id, options, PIPELINE_KEYS, PIPELINE_GENERATION_DEFAULTS);
  }

  private async records(
    encoded: BatchFeature<Tensor>,
    prompt: string | ChatMessage[],
    options: ImageTextToTextOptions,
    continueFinal: boolean,
  ): Promise<ImageTextToTextRecord[]> {
    const sequences = (await this.model.generate({
      ...(this.generationOptions(options) as GenerateOptions),
      input_ids: encoded.input_ids,
      attention_mask: encoded.attention_mask,
      ...(encoded.pixel_values ? { pixel_values: encoded.pixel_values } : {}),
    })) as Tensor;
    const skip = { skip_special_tokens: options.skip_special_tokens ?? true };
    const [rows, width] = sequences.dims;
    const decodedInput = this.processor.post_process_image_text_to_text(encoded.input_ids, skip)[0] as string;
    const records: ImageTextToTextRecord[] = [];
    for (let r = 0; r < rows; r++) {
      // As transformers: decode the whole sequence and cut the decoded prompt off its start.
      const full = this.processor.post_process_image_text_to_text(Array.from(sequences.data.subarray(r * width, (r + 1) * width)), skip);
      const at = full.indexOf(decodedInput);
      const generated = at >= 0 && at <= 2 ? full.slice(at + decodedInput.length) : full;
      let output: string | ChatMessage[] = generated;
      if (options.return_full_text !== false) {
        if (typeof prompt === "string") output = prompt + generated;
        else if (continueFinal) output = [...prompt.slice(0, -1), continueMessage(prompt[prompt.length - 1], generated)];
        else output = [...prompt, { role: "assistant", content: generated }];
      }
      records.push({ input_text: prompt, generated_text: output });
    }
    return records;
  }
}

/** The final message with the generated text appended to its (last) text. */
function continueMessage(message: ChatMessage, generated: string): ChatMessage {
  const content = message.content;
  if (typeof content === "string") return { role: message.role, content: content + generated };
  if (Array.isArray(content) && content.length > 0) {
    const last = { ...content[content.length - 1] } as { text?: string };
    last.text = (last.text ?? "") + generated;
    return { role: message.role, content: [...content.slice(0, -1), last] as ChatMessage["content"] };
  }
  return { role: message.role, content: generated };
}
