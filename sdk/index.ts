// Public entry point of llama4-ts: names as in transformers.
export { Tensor } from "./tensor";
export type { TensorDType, SliceIndex } from "./tensor";
export { torch } from "./torch";
export { PretrainedConfig } from "./configuration_utils";
export { AutoConfig } from "./models/auto/configuration_auto";
export { Llama4Config, Llama4TextConfig, Llama4VisionConfig } from "./models/llama4/configuration_llama4";
export {
  DynamicCache,
  Llama4ForCausalLM,
  Llama4ForConditionalGeneration,
  Llama4PreTrainedModel,
  Llama4TextModel,
} from "./models/llama4/modeling_llama4";
export type {
  FromPretrainedOptions,
  Llama4CausalLMOutput,
  Llama4ForwardInputs,
  Llama4TextModelOutput,
} from "./models/llama4/modeling_llama4";
export { GenerationConfig } from "./generation/configuration_utils";
export type { GenerateOptions, GenerateOutput } from "./generation/utils";
export {
  MinLengthLogitsProcessor,
  MinPLogitsWarper,
  RepetitionPenaltyLogitsProcessor,
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
} from "./generation/logits_process";
export type { LogitsProcessor } from "./generation/logits_process";
export { EosTokenCriteria, MaxLengthCriteria, StopStringCriteria } from "./generation/stopping_criteria";
export type { StoppingCriteria } from "./generation/stopping_criteria";
export { AsyncTextIteratorStreamer, TextStreamer } from "./generation/streamers";
export type { BaseStreamer } from "./generation/streamers";
export { AutoProcessor } from "./models/auto/processing_auto";
export { BatchFeature, Llama4Processor } from "./models/llama4/processing_llama4";
export type {
  ImagePatchLayout,
  ProcessorCallOptions,
  ProcessorChatTemplateOptions,
  ProcessorFromPretrainedOptions,
} from "./models/llama4/processing_llama4";
export { Llama4ImageProcessor, Llama4ImageProcessorFast } from "./models/llama4/image_processing_llama4";
export type { Llama4ImageProcessorCallOptions, Llama4ImageProcessorOutput } from "./models/llama4/image_processing_llama4";
export { load_image, RawImage } from "./image_utils";
export type { ImageInput, LoadImageOptions } from "./image_utils";
export { AutoTokenizer, PreTrainedTokenizer, PreTrainedTokenizerFast, TokenizersBackend, BatchEncoding } from "./tokenization_utils";
export type {
  TokenizerCallOptions,
  ChatTemplateOptions,
  ChatMessage,
  MessageContentPart,
  ToolCall,
  DecodeOptions,
  TokenizerFromPretrainedOptions,
  PaddingStrategy,
  TruncationStrategy,
  Side,
} from "./tokenization_utils";
export { pipeline, SUPPORTED_TASKS } from "./pipelines";
export type { PipelineOptions, CallableTextGenerationPipeline, CallableImageTextToTextPipeline } from "./pipelines";
export { ImageTextToTextPipeline } from "./pipelines/image_text_to_text";
export type { ImageTextToTextInput, ImageTextToTextOptions, ImageTextToTextRecord } from "./pipelines/image_text_to_text";
export { TextGenerationPipeline } from "./pipelines/text_generation";
export type { TextGenerationOptions, GeneratedRecord, TextGenerationInput } from "./pipelines/text_generation";
export { HubError } from "./hub/errors";
export type { PretrainedOptions, ProgressInfo } from "./hub";
export { GenerationTrace } from "./trace";
export type {
  AttentionMap,
  ExpertIntervention,
  GenerationTraceData,
  LayerRouting,
  MemoryStep,
  TraceMemory,
  TraceModelInfo,
  TraceOptions,
  TraceToken,
  WeightMemory,
} from "./trace";
export { set_seed, Random } from "./utils/random";
export { FbgemmFp8Config } from "./utils/quantization_config";
export { default_model, embedded_model_path, EMBEDDED_MODEL_NAME } from "./embedded";
export { setNumThreads, getNumThreads, simdKernels, availableKernels } from "./utils/engine";
export { cancelAll, registerCancellable, unregisterCancellable } from "./utils/cancellation";
export type { Cancellable } from "./utils/cancellation";
