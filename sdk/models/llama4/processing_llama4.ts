// Llama4Processor: the tokenizer and the image processor together, as transformers'
// processing_llama4.py. Each <|image|> placeholder in the text becomes the image's token layout
// (tile patches, tile separators, the global thumbnail's patches) before tokenization, so
// input_ids has one <|patch|> per image feature the vision tower will produce.
import { existsSync } from "node:fs";
import { join } from "node:path";

import { readJsonFile } from "../../configuration_utils";
import { HUB_OPTION_KEYS, hubOptionsOf, PretrainedOptions, resolvePretrained } from "../../hub";
import { load_image, RawImage, type ImageInput, type LoadImageOptions } from "../../image_utils";
import { Tensor } from "../../tensor";
import {
  AutoTokenizer,
  BatchEncoding,
  CallableInstance,
  ChatMessage,
  ChatTemplateOptions,
  DecodeOptions,
  PreTrainedTokenizer,
  TokenizerCallOptions,
} from "../../tokenization_utils";
import { checkOptions, describe } from "../../utils/options";
import { Llama4ImageProcessor, readImageProcessorConfig, type Llama4ImageProcessorOverrides } from "./image_processing_llama4";

/** What the processor returns: the tokenizer's fields plus pixel_values when there are images.
 * Spread it into generate: `model.generate({ ...inputs, max_new_tokens: 256 })`. */
export class BatchFeature<T = number[] | number[][] | Tensor> extends BatchEncoding<T> {
  /** [total tiles, 3, tile height, tile width], every image's tiles in order. */
  pixel_values?: Tensor;

  constructor(encoding: BatchEncoding<T>, pixel_values?: Tensor) {
    super(encoding.input_ids, encoding.attention_mask);
    if (pixel_values !== undefined) this.pixel_values = pixel_values;
  }
}

/** Keyword arguments of `processor({ text, images, ... })`. */
export interface ProcessorCallOptions extends TokenizerCallOptions, Llama4ImageProcessorOverrides {
  text?: string | string[];
  /** One image or a flat list, taken in order by the <|image|> placeholders of all texts. */
  images?: ImageInput | ImageInput[] | null;
  /** How images named by path / URL / bytes are loaded (fetch for URLs, pixel limit). */
  load_image_options?: LoadImageOptions;
  /** Image processor settings grouped, as transformers' nested `images_kwargs`. */
  images_kwargs?: Llama4ImageProcessorOverrides;
  /** Tokenizer settings grouped, as transformers' nested `text_kwargs`. */
  text_kwargs?: TokenizerCallOptions;
}

/** What `processor_kwargs` of apply_chat_template and of the pipeline may hold: the processor call's options. */
export type ProcessorKwargs = Omit<ProcessorCallOptions, "text" | "images">;

/** Where an image's <|patch|> tokens lie in the image (for drawing attention over it). */
export interface ImagePatchLayout {
  /** The image as loaded (after EXIF orientation). */
  image_width: number;
  image_height: number;
  /** Side of a square tile, in pixels of the processed image. */
  tile_size: number;
  /** [tiles down, tiles across]. */
  aspect_ratio: [number, number];
  /** Size of the image inside the tile canvas (the rest is padding). */
  resized_width: number;
  resized_height: number;
  /** Image tokens per tile (a square: g x g, each covering 2 x 2 patches after the pixel shuffle). */
  tokens_per_tile: number;
  /** Token ids of <|image_start|> and <|patch|>. */
  image_start_id: number;
  patch_id: number;
  /** Token ids of <|tile_x_separator|> and <|tile_y_separator|> (to tell a 1x2 from a 2x1 image). */
  tile_x_separator_id?: number;
  tile_y_separator_id?: number;
}

/**
 * Keyword arguments of the processor's apply_chat_template. As in transformers, it renders text unless
 * `tokenize` is set, and returns only input_ids unless `return_dict` is set too.
 */
export interface ProcessorChatTemplateOptions extends ChatTemplateOptions {
  /** Default false (unlike the tokenizer's): return the rendered text; true: the processor's input_ids. */
  tokenize?: boolean;
  /** Default false (unlike the tokenizer's): with tokenize, input_ids alone; true: everything the model takes. */
  return_dict?: boolean;
  /** Options of the processor call that tokenizes the rendered text (e.g. `{ max_patches: 1 }`). Image
   * processor and tokenizer options given directly (max_patches, images_kwargs, ...) are taken as these
   * too, as transformers takes the keyword arguments its template does not use. */
  processor_kwargs?: ProcessorKwargs;
  /** How images named by url / path are loaded (fetch for URLs, pixel limit). */
  load_image_options?: LoadImageOptions;
}

export interface ProcessorFromPretrainedOptions extends PretrainedOptions {
  /** Use this tokenizer instead of loading the repo's. */
  tokenizer?: PreTrainedTokenizer;
}

const PROCESSOR_FILES = { required: [], optional: ["processor_config.json", "preprocessor_config.json"] };
const TOKENIZER_CALL_KEYS = ["add_special_tokens", "padding", "truncation", "max_length", "pad_to_multiple_of",
  "padding_side", "return_tensors", "return_attention_mask"] as const;
const IMAGE_KEYS = ["size", "max_patches", "resize_to_max_canvas", "do_rescale", "rescale_factor", "do_normalize",
  "image_mean", "image_std", "do_convert_rgb", "resample", "do_resize"] as const;
const PROCESSOR_KWARG_KEYS = ["load_image_options", "images_kwargs", "text_kwargs", ...TOKENIZER_CALL_KEYS, ...IMAGE_KEYS] as const;

export interface Llama4Processor {
  (options: ProcessorCallOptions & { return_tensors: "pt" }): Promise<BatchFeature<Tensor>>;
  (options: ProcessorCallOptions): Promise<BatchFeature>;
}

export class Llama4Processor extends CallableInstance {
  readonly image_processor: Llama4ImageProcessor;
  readonly tokenizer: PreTrainedTokenizer;
  /** Side of the vision tower's square patches (pixels). */
  readonly patch_size: number;
  /** Patches merged into one image token by the pixel shuffle: 1 / pixel_shuffle_ratio². */
  readonly downsample_ratio: number;
  /** The placeholder users write in text; each one is expanded into an image's token layout. */
  readonly fake_image_token: string;
  readonly image_token: string;
  readonly image_token_id: number;
  readonly start_of_img_token: string;
  readonly end_of_img_token: string;
  readonly img_patch_token: string;
  readonly tile_token: string;
  readonly tile_global_token: string;
  readonly chat_template: string | null;

  constructor(
    image_processor: Llama4ImageProcessor,
    tokenizer: PreTrainedTokenizer,
    config: {
      patch_size?: number;
      pixel_shuffle_ratio?: number;
      fake_image_token?: string;
      image_token?: string;
      start_of_image_token?: string;
      end_of_image_token?: string;
      patch_token?: string;
      tile_x_separator_token?: string;
      tile_y_separator_token?: string;
      chat_template?: string | null;
    } = {},
  ) {
    super();
    this.image_processor = image_processor;
    this.tokenizer = tokenizer;
    this.patch_size = positiveInteger(config.patch_size ?? 14, "patch_size");
    const ratio = config.pixel_shuffle_ratio ?? 0.5;
    if (!(ratio > 0 && ratio <= 1)) throw new Error(`Llama4Processor: pixel_shuffle_ratio must be in (0, 1], got ${ratio}`);
    this.downsample_ratio = Math.round(1 / (ratio * ratio));
    this.fake_image_token = config.fake_image_token ?? "<|image|>";
    this.image_token = config.image_token ?? "<|image|>";
    this.start_of_img_token = config.start_of_image_token ?? "<|image_start|>";
    this.end_of_img_token = config.end_of_image_token ?? "<|image_end|>";
    this.img_patch_token = config.patch_token ?? "<|patch|>";
    this.tile_token = config.tile_x_separator_token ?? "<|tile_x_separator|>";
    this.tile_global_token = config.tile_y_separator_token ?? "<|tile_y_separator|>";
    this.chat_template = config.chat_template ?? null;
    for (const token of [this.image_token, this.start_of_img_token, this.end_of_img_token, this.img_patch_token,
      this.tile_token, this.tile_global_token]) {
      if (tokenizer.convert_tokens_to_ids(token) === null) {
        throw new Error(`Llama4Processor: the tokenizer has no token ${token}; it is not a Llama 4 tokenizer`);
      }
    }
    this.image_token_id = tokenizer.convert_tokens_to_ids(this.image_token)!;
  }

  /** processor_config.json + preprocessor_config.json + the tokenizer of a directory or Hub repo. */
  static async from_pretrained(pathOrId: string, options: ProcessorFromPretrainedOptions = {}): Promise<Llama4Processor> {
    checkOptions("from_pretrained", options, [...HUB_OPTION_KEYS, "tokenizer"]);
    const dir = await resolvePretrained(pathOrId, PROCESSOR_FILES, options);
    const config = existsSync(join(dir, "processor_config.json")) ? readJsonFile(join(dir, "processor_config.json")) : {};
    const imageConfig = readImageProcessorConfig(dir);
    if (!imageConfig) {
      throw new Error(`${pathOrId}: no preprocessor_config.json (nor an image_processor in processor_config.json): this checkpoint has no image processor`);
    }
    const tokenizer = options.tokenizer ?? (await AutoTokenizer.from_pretrained(pathOrId, hubOptionsOf(options)));
    return new Llama4Processor(new Llama4ImageProcessor(imageConfig), tokenizer, config as ConstructorParameters<typeof Llama4Processor>[2]);
  }

  /** The text that stands for one image: its tiles' patches in rows, then the global tile's. */
  _prompt_split_image(aspect_ratio: number[], num_patches_per_chunk: number): string {
    const [ratio_h, ratio_w] = aspect_ratio;
    const patches = this.img_patch_token.repeat(num_patches_per_chunk);
    let text = this.start_of_img_token;
    if (ratio_h * ratio_w > 1) {
      for (let y = 0; y < ratio_h; y++) {
        for (let x = 0; x < ratio_w; x++) {
          text += patches;
          if (x < ratio_w - 1) text += this.tile_token;
        }
        text += this.tile_global_token;
      }
    }
    return text + this.image_token + patches + this.end_of_img_token;
  }

  /**
   * transformers' `processor(text=..., images=..., ...)`; instances are callable the same way. As there,
   * input_ids is always a batch (one row per text), even for a single string.
   */
  async __call__(options: ProcessorCallOptions): Promise<BatchFeature> {
    if (options === null || typeof options !== "object" || Array.isArray(options)) {
      throw new TypeError(`processor: call it with the keyword arguments as one object, processor({ text, images, ... }); got ${describe(options)}`);
    }
    checkOptions("processor", options, ["text", "images", ...PROCESSOR_KWARG_KEYS]);
    const { text, images = null, load_image_options, images_kwargs = {}, text_kwargs = {}, ...flat } = options;
    checkOptions("processor images_kwargs", images_kwargs, IMAGE_KEYS);
    checkOptions("processor text_kwargs", text_kwargs, TOKENIZER_CALL_KEYS);
    if (text === undefined || text === null) throw new Error("processor: you have to specify text");
    const batched = Array.isArray(text);
    const texts = batched ? (text as string[]) : [text as string];
    texts.forEach((t, i) => {
      if (typeof t !== "string") throw new TypeError(`processor: text${batched ? `[${i}]` : ""} must be a string, got ${describe(t)}`);
    });
    const tokenizerOptions: TokenizerCallOptions = { padding_side: "left", ...text_kwargs };
    const imageOverrides: Llama4ImageProcessorOverrides = { ...images_kwargs };
    for (const [key, value] of Object.entries(flat)) {
      const isTokenizerKey = (TOKENIZER_CALL_KEYS as readonly string[]).includes(key);
      if (key in (isTokenizerKey ? text_kwargs : images_kwargs)) {
        throw new Error(`processor: ${key} was given twice, directly and in ${isTokenizerKey ? "text_kwargs" : "images_kwargs"}`);
      }
      if (isTokenizerKey) (tokenizerOptions as Record<string, unknown>)[key] = value;
      else (imageOverrides as Record<string, unknown>)[key] = value;
    }

    const imageList = images === null ? [] : Array.isArray(images) ? images.flat(Infinity as 1) as ImageInput[] : [images];
    const placeholders = texts.map((t) => t.split(this.fake_image_token).length - 1);
    const wanted = placeholders.reduce((a, b) => a + b, 0);
    if (wanted !== imageList.length) {
      throw new Error(
        `processor: the text has ${wanted} ${this.fake_image_token} placeholder${wanted === 1 ? "" : "s"} ` +
          `but ${imageList.length} image${imageList.length === 1 ? " was" : "s were"} given; put one ${this.fake_image_token} where each image goes`,
      );
    }
    if (imageList.length === 0) return new BatchFeature(this.tokenizer(texts, tokenizerOptions));

    const processed = await this.image_processor.preprocess(imageList, { ...imageOverrides, load_image_options });
    const [, , height, width] = processed.pixel_values.dims;
    const perTile = this.tokensPerTile(height, width);
    let next = 0;
    const expanded = texts.map((t) =>
      t.split(this.fake_image_token).reduce((acc, piece) => acc + this._prompt_split_image(processed.aspect_ratios[next++], perTile) + piece),
    );
    const encoding = this.tokenizer(expanded, tokenizerOptions);
    this.checkImageTokensKept(expanded, encoding);
    return new BatchFeature(encoding, processed.pixel_values);
  }

  /** Truncation that cuts into an image's tokens leaves features without a place; refuse it here, before
   * the vision tower runs (transformers checks the <|image|> count the same way). */
  private checkImageTokensKept(expanded: string[], encoding: BatchEncoding): void {
    const patchId = this.tokenizer.convert_tokens_to_ids(this.img_patch_token)!;
    const rows = encoding.input_ids instanceof Tensor ? (encoding.input_ids.tolist() as number[][]) : (encoding.input_ids as number[][]);
    rows.forEach((row, i) => {
      const kept = row.filter((id) => id === patchId).length;
      const wanted = expanded[i].split(this.img_patch_token).length - 1;
      if (kept !== wanted) {
        throw new Error(
          `processor: text${expanded.length > 1 ? `[${i}]` : ""} keeps ${kept} of its images' ${wanted} ${this.img_patch_token} tokens ` +
            "after tokenization, likely cut by truncation / max_length; disable truncation or raise max_length",
        );
      }
    });
  }

  private tokensPerTile(height: number, width: number): number {
    return Math.floor((Math.floor(height / this.patch_size) * Math.floor(width / this.patch_size)) / this.downsample_ratio);
  }

  /** Where the <|patch|> tokens of `image` (as load_image returns it) lie in it: see viz's imageAttention. */
  image_layout(image: RawImage): ImagePatchLayout {
    if (!(image instanceof RawImage)) throw new TypeError(`image_layout: expected a RawImage (await load_image(...)), got ${describe(image)}`);
    const plan = this.image_processor.plan(image.width, image.height);
    const { height, width } = this.image_processor.size;
    return {
      image_width: image.width,
      image_height: image.height,
      tile_size: height,
      aspect_ratio: plan.aspect_ratio,
      resized_width: plan.resized[1],
      resized_height: plan.resized[0],
      tokens_per_tile: this.tokensPerTile(height, width),
      image_start_id: this.tokenizer.convert_tokens_to_ids(this.start_of_img_token)!,
      patch_id: this.tokenizer.convert_tokens_to_ids(this.img_patch_token)!,
      tile_x_separator_id: this.tokenizer.convert_tokens_to_ids(this.tile_token)!,
      tile_y_separator_id: this.tokenizer.convert_tokens_to_ids(this.tile_global_token)!,
    };
  }

  /**
   * Renders a chat (images as {type: "image", url | path | image | base64}, or OpenAI's
   * {type: "image_url", image_url: {url}}). With `tokenize`, loads its images in order and returns the
   * processor's input_ids for the rendered text, or with `return_dict` too, everything the model takes.
   */
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ProcessorChatTemplateOptions & { tokenize: true; return_dict: true; return_tensors: "pt" }): Promise<BatchFeature<Tensor>>;
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ProcessorChatTemplateOptions & { tokenize: true; return_dict: true }): Promise<BatchFeature>;
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ProcessorChatTemplateOptions & { tokenize: true; return_tensors: "pt" }): Promise<Tensor>;
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ProcessorChatTemplateOptions & { tokenize: true }): Promise<number[][]>;
  apply_chat_template(conversation: ChatMessage[], options?: ProcessorChatTemplateOptions & { tokenize?: false }): Promise<string>;
  apply_chat_template(conversation: ChatMessage[][], options?: ProcessorChatTemplateOptions & { tokenize?: false }): Promise<string[]>;
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options?: ProcessorChatTemplateOptions): Promise<string | string[] | number[][] | Tensor | BatchFeature>;
  async apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ProcessorChatTemplateOptions = {}): Promise<string | string[] | number[][] | Tensor | BatchFeature> {
    const { tokenize = false, return_dict = false, processor_kwargs = {}, load_image_options, return_tensors, padding, truncation,
      max_length, tokenizer_kwargs = {}, ...others } = options;
    if (!Array.isArray(conversation)) {
      throw new TypeError(`apply_chat_template: conversation must be an array of messages (or of conversations), got ${describe(conversation)}`);
    }
    checkOptions("apply_chat_template processor_kwargs", processor_kwargs, PROCESSOR_KWARG_KEYS);
    // Processor options given directly are the processor's, the rest are template variables.
    const direct: Record<string, unknown> = {};
    const templateOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(others)) {
      ((PROCESSOR_KWARG_KEYS as readonly string[]).includes(key) ? direct : templateOptions)[key] = value;
    }
    const batched = conversation.length > 0 && Array.isArray(conversation[0]);
    const conversations = ((batched ? conversation : [conversation]) as ChatMessage[][]).map(withImageUrlPartsAsImages);
    const template = (templateOptions.chat_template as string | null | undefined) ?? this.chat_template;
    const texts = conversations.map((c) => this.tokenizer.apply_chat_template(c, { ...templateOptions, chat_template: template, tokenize: false }));
    if (!tokenize) return batched ? texts : texts[0];
    // A batch's images are taken in order across its conversations, as the <|image|> placeholders are.
    const sources = conversations.flatMap((c, b) => imagesOfConversation(c, batched ? `conversation ${b} ` : ""));
    const loadOptions = { ...(processor_kwargs.load_image_options ?? direct.load_image_options ?? {}), ...load_image_options };
    const images = await Promise.all(sources.map(async ({ source, where }) => {
      try {
        return await load_image(source, loadOptions);
      } catch (err) {
        throw new Error(`apply_chat_template: ${where}: ${(err as Error).message}`, { cause: err });
      }
    }));
    // Every processor option flat (nested images_kwargs / text_kwargs opened), later sources winning, so
    // none is given twice: tokenizer options, then processor options given directly, then processor_kwargs.
    const flat = (o: ProcessorKwargs) => {
      const { images_kwargs: nestedImages, text_kwargs: nestedText, load_image_options: _loaded, ...rest } = o;
      return { ...nestedImages, ...nestedText, ...rest };
    };
    const setHere = Object.fromEntries(Object.entries({ return_tensors, padding, truncation, max_length }).filter(([, v]) => v !== undefined));
    const callOptions: ProcessorCallOptions = {
      ...tokenizer_kwargs, ...setHere, ...flat(direct as ProcessorKwargs), ...flat(processor_kwargs),
      text: batched ? texts : texts[0], images,
    };
    // A template that writes <|begin_of_text|> itself must not get a second one, as in transformers.
    if (this.tokenizer.bos_token !== null && texts[0]?.startsWith(this.tokenizer.bos_token)) callOptions.add_special_tokens = false;
    const out = await this.__call__(callOptions);
    return return_dict ? out : (out.input_ids as number[][] | Tensor);
  }

  decode(ids: number | number[] | Tensor, options?: DecodeOptions): string {
    return this.tokenizer.decode(ids, options);
  }

  batch_decode(sequences: number[][] | Tensor, options?: DecodeOptions): string[] {
    return this.tokenizer.batch_decode(sequences, options);
  }

  /**
   * As transformers' post_process_image_text_to_text: the text of each generated sequence (special
   * tokens skipped); one sequence (number[] or a 1-D Tensor) gives one string.
   */
  post_process_image_text_to_text(sequence: number[], options?: DecodeOptions): string;
  post_process_image_text_to_text(sequences: number[][], options?: DecodeOptions): string[];
  post_process_image_text_to_text(sequences: Tensor, options?: DecodeOptions): string | string[];
  post_process_image_text_to_text(sequences: number[] | number[][] | Tensor, options: DecodeOptions = {}): string | string[] {
    const decodeOptions = { skip_special_tokens: true, ...options };
    const single = sequences instanceof Tensor ? sequences.dims.length === 1
      : Array.isArray(sequences) && (sequences.length === 0 || typeof sequences[0] === "number");
    if (single) return this.tokenizer.decode(sequences as number[] | Tensor, decodeOptions);
    return this.tokenizer.batch_decode(sequences as number[][] | Tensor, decodeOptions);
  }
}

/** The chat with OpenAI-style {type: "image_url", image_url: {url} | url} parts as {type: "image", url}
 * parts, as transformers normalises them (the messages given are not changed). */
function withImageUrlPartsAsImages(conversation: ChatMessage[]): ChatMessage[] {
  return conversation.map((message) => {
    if (!Array.isArray(message?.content) || !message.content.some((part) => part?.type === "image_url")) return message;
    const content = message.content.map((part) => {
      if (part?.type !== "image_url") return part;
      if (!("image_url" in part)) throw new Error(`apply_chat_template: an image_url part must hold image_url: { url } (got keys ${Object.keys(part).join(", ")})`);
      const info = part.image_url as { url?: unknown } | string | null;
      return { type: "image", url: typeof info === "object" && info !== null ? info.url : info };
    });
    return { ...message, content };
  });
}

/** The image parts of a chat, in order, with where each one is (for error messages). */
function imagesOfConversation(conversation: ChatMessage[], prefix: string): { source: ImageInput; where: string }[] {
  const found: { source: ImageInput; where: string }[] = [];
  conversation.forEach((message, m) => {
    if (!Array.isArray(message?.content)) return;
    message.content.forEach((part, p) => {
      if (part?.type !== "image") return;
      const where = `${prefix}messages[${m}].content[${p}]`;
      const source = part.image ?? part.url ?? part.path ?? part.base64;
      if (source === undefined || source === null) {
        throw new Error(`apply_chat_template: ${where} is an image part without "url", "path", "image" or "base64"`);
      }
      // bare base64 becomes a data URL; one that is a data URL already stays as it is
      const onlyBase64 = part.base64 !== undefined && part.image === undefined && part.url === undefined && part.path === undefined;
      const asData = onlyBase64 && !String(part.base64).startsWith("data:") ? `data:image/*;base64,${String(part.base64)}` : source;
      found.push({ source: asData as ImageInput, where });
    });
  });
  return found;
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new Error(`Llama4Processor: ${name} must be a positive integer, got ${describe(value)}`);
  }
  return value;
}
