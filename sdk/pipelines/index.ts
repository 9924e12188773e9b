// pipeline(task, options): transformers' factory. Loads the model and its tokenizer or processor
// (or takes them ready-made) and returns a pipeline that is called like a function.
import { AutoTokenizer, PreTrainedTokenizer } from "../tokenization_utils";
import { FromPretrainedOptions, Llama4ForCausalLM, Llama4ForConditionalGeneration } from "../models/llama4/modeling_llama4";
import { checkOptions, closestName } from "../utils/options";
import { Chat, PipelineTokenizer, TextGenerationInput, TextGenerationOptions, TextGenerationPipeline, GeneratedRecord } from "./text_generation";
import { readJsonFile } from "../configuration_utils";
import { HUB_OPTION_KEYS, hubOptionsOf, resolvePretrained } from "../hub";
import { join } from "node:path";
import { AutoProcessor } from "../models/auto/processing_auto";
import { Llama4Config } from "../models/llama4/configuration_llama4";
import { Llama4Processor } from "../models/llama4/processing_llama4";
import { ImageTextToTextInput, ImageTextToTextOptions, ImageTextToTextPipeline, ImageTextToTextRecord } from "./image_text_to_text";

export const SUPPORTED_TASKS = ["text-generation", "image-text-to-text"] as const;
export type Task = (typeof SUPPORTED_TASKS)[number];

export interface PipelineOptions extends FromPretrainedOptions {
  /** A model id / directory, or a loaded model. */
  model: string | Llama4ForCausalLM;
  /** Defaults to the model's own tokenizer files. */
  tokenizer?: string | PreTrainedTokenizer;
  /** image-text-to-text: defaults to the model's own processor files. */
  processor?: string | Llama4Processor;
}

const OPTION_KEYS = ["model", "tokenizer", "processor", "dtype", "torch_dtype", "device_map", "attn_implementation", ...HUB_OPTION_KEYS] as const;

/**
 * A pipeline instance is a function (`await pipe(inputs, options)`, as in Python) that also carries
 * the pipeline's fields and methods: the function's prototype is the pipeline class's.
 */
export type CallableTextGenerationPipeline = TextGenerationPipeline & {
  (inputs: string, options?: TextGenerationOptions): Promise<{ generated_text: string }[]>;
  (inputs: Chat, options?: TextGenerationOptions & { return_full_text?: true }): Promise<{ generated_text: Chat }[]>;
  (inputs: TextGenerationInput[], options?: TextGenerationOptions): Promise<GeneratedRecord[][]>;
  (inputs: TextGenerationInput | TextGenerationInput[], options?: TextGenerationOptions): Promise<GeneratedRecord[] | GeneratedRecord[][]>;
};

export type CallableImageTextToTextPipeline = ImageTextToTextPipeline & {
  (inputs: ImageTextToTextInput | null, options?: ImageTextToTextOptions): Promise<ImageTextToTextRecord[]>;
  (inputs: ImageTextToTextInput[], options?: ImageTextToTextOptions): Promise<ImageTextToTextRecord[][]>;
};

export async function pipeline(task: "text-generation", options: PipelineOptions): Promise<CallableTextGenerationPipeline>;
export async function pipeline(task: "image-text-to-text", options: PipelineOptions): Promise<CallableImageTextToTextPipeline>;
export async function pipeline(task: string, options: PipelineOptions): Promise<CallableTextGenerationPipeline | CallableImageTextToTextPipeline> {
  if (!(SUPPORTED_TASKS as readonly string[]).includes(task)) {
    const guess = closestName(String(task), SUPPORTED_TASKS);
    throw new Error(`pipeline: unknown task "${task}"` + (guess ? ` (did you mean "${guess}"?)` : "") + `; supported: ${SUPPORTED_TASKS.join(", ")}`);
  }
  if (!options || options.model === undefined) throw new Error(`pipeline("${task}"): the "model" option is required (a model id, a directory or a loaded model)`);
  checkOptions(`pipeline("${task}")`, options, OPTION_KEYS);
  const { model: modelOption, tokenizer: tokenizerOption, processor: processorOption, ...loadOptions } = options;

  let model: Llama4ForCausalLM;
  if (typeof modelOption === "string") {
    // Meta publishes Llama 4 in the multimodal layout; the text-only layout loads as Llama4ForCausalLM.
    const dir = await resolvePretrained(modelOption, { required: ["config.json"] }, loadOptions);
    const multimodal = "text_config" in readJsonFile(join(dir, "config.json"));
    model = await (multimodal ? Llama4ForConditionalGeneration : Llama4ForCausalLM).from_pretrained(modelOption, loadOptions);
  } else {
    model = modelOption;
  }
  if (task === "image-text-to-text") return imageTextToText(model, modelOption, processorOption, loadOptions);
  if (processorOption !== undefined) throw new Error(`pipeline("${task}"): "processor" is for image-text-to-text; pass "tokenizer"`);
  if (typeof modelOption !== "string" && tokenizerOption === undefined) {
    throw new Error(`pipeline("${task}"): pass the tokenizer too when "model" is a loaded model`);
  }
  const hubOptions = hubOptionsOf(loadOptions);
  const tokenizer =
    tokenizerOption === undefined || typeof tokenizerOption === "string"
      ? await AutoTokenizer.from_pretrained(tokenizerOption ?? (modelOption as string), hubOptions)
      : tokenizerOption;
  const instance = new TextGenerationPipeline(model, tokenizer as unknown as PipelineTokenizer & ((t: string, o: Record<string, unknown>) => unknown));
  const call = (inputs: TextGenerationInput | TextGenerationInput[], callOptions?: TextGenerationOptions) => instance._call(inputs, callOptions);
  return Object.assign(Object.setPrototypeOf(call, TextGenerationPipeline.prototype), instance) as CallableTextGenerationPipeline;
}

async function imageTextToText(
  model: Llama4ForCausalLM,
  modelOption: string | Llama4ForCausalLM,
  processorOption: string | Llama4Processor | undefined,
  loadOptions: Record<string, unknown>,
): Promise<CallableImageTextToTextPipeline> {
  if (!(model instanceof Llama4ForConditionalGeneration) || !(model.config instanceof Llama4Config)) {
    throw new Error(`pipeline("image-text-to-text"): ${model.name_or_path} is a text-only checkpoint (no vision tower); use "text-generation"`);
  }
  if (typeof modelOption !== "string" && processorOption === undefined) {
    throw new Error(`pipeline("image-text-to-text"): pass the processor too when "model" is a loaded model`);
  }
  const processor = processorOption instanceof Llama4Processor
    ? processorOption
    : await AutoProcessor.from_pretrained(processorOption ?? (modelOption as string), hubOptionsOf(loadOptions));
  const instance = new ImageTextToTextPipeline(model, processor);
  const call = (inputs: ImageTextToTextInput | ImageTextToTextInput[], callOptions?: ImageTextToTextOptions) => instance._call(inputs, callOptions);
  return Object.assign(Object.setPrototypeOf(call, ImageTextToTextPipeline.prototype), instance) as CallableImageTextToTextPipeline;
}
