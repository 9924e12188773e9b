// pipeline(task, options): transformers' factory. Loads the model and tokenizer (or takes them
// ready-made) and returns a pipeline that is called like a function.
import { AutoTokenizer, PreTrainedTokenizer } from "../tokenization_utils";
import { FromPretrainedOptions, Llama4ForCausalLM, Llama4ForConditionalGeneration } from "../models/llama4/modeling_llama4";
import { checkOptions, closestName } from "../utils/options";
import { Chat, PipelineTokenizer, TextGenerationInput, TextGenerationOptions, TextGenerationPipeline, GeneratedRecord } from "./text_generation";
import { readJsonFile } from "../configuration_utils";
import { HUB_OPTION_KEYS, hubOptionsOf, resolvePretrained } from "../hub";
import { join } from "node:path";

export const SUPPORTED_TASKS = ["text-generation"] as const;
export type Task = (typeof SUPPORTED_TASKS)[number];

export interface PipelineOptions extends FromPretrainedOptions {
  /** A model id / directory, or a loaded model. */
  model: string | Llama4ForCausalLM;
  /** Defaults to the model's own tokenizer files. */
  tokenizer?: string | PreTrainedTokenizer;
}

const OPTION_KEYS = ["model", "tokenizer", "dtype", "torch_dtype", "device_map", "attn_implementation", ...HUB_OPTION_KEYS] as const;

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

export async function pipeline(task: "text-generation", options: PipelineOptions): Promise<CallableTextGenerationPipeline>;
export async function pipeline(task: string, options: PipelineOptions): Promise<CallableTextGenerationPipeline> {
  if (!(SUPPORTED_TASKS as readonly string[]).includes(task)) {
    const guess = closestName(String(task), SUPPORTED_TASKS);
    throw new Error(`pipeline: unknown task "${task}"` + (guess ? ` (did you mean "${guess}"?)` : "") + `; supported: ${SUPPORTED_TASKS.join(", ")}`);
  }
  if (!options || options.model === undefined) throw new Error(`pipeline("${task}"): the "model" option is required (a model id, a directory or a loaded model)`);
  checkOptions(`pipeline("${task}")`, options, OPTION_KEYS);
  const { model: modelOption, tokenizer: tokenizerOption, ...loadOptions } = options;

  let model: Llama4ForCausalLM;
  if (typeof modelOption === "string") {
    // Meta publishes Llama 4 in the multimodal layout; the text-only layout loads as Llama4ForCausalLM.
    const dir = await resolvePretrained(modelOption, { required: ["config.json"] }, loadOptions);
    const multimodal = "text_config" in readJsonFile(join(dir, "config.json"));
    model = await (multimodal ? Llama4ForConditionalGeneration : Llama4ForCausalLM).from_pretrained(modelOption, loadOptions);
  } else {
    model = modelOption;
  }
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
