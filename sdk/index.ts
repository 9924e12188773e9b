// Public entry point of llama4-ts: names as in transformers.
export { Tensor } from "./tensor";
export type { TensorDType, SliceIndex } from "./tensor";
export { torch } from "./torch";
export {
  DynamicCache,
  Llama4ForCausalLM,
  Llama4ForConditionalGeneration,
  Llama4PreTrainedModel,
} from "./models/llama4/modeling_llama4";
export type {
  FromPretrainedOptions,
  Llama4CausalLMOutput,
  Llama4ForwardInputs,
  GreedyGenerateInputs,
} from "./models/llama4/modeling_llama4";
export { setNumThreads, getNumThreads, simdKernels } from "./utils/engine";
