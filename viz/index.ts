// viz/: routing, attention and memory of a Llama 4 trace (sdk/trace.ts) as Vega-Lite and Plotly
// specs built by pure functions, a memory estimator from config.json alone, static SVG/PNG
// rendering, and Jupyter display bundles.
export { FIT_VIEW, FIT_WIDTH, VEGA_LITE_SCHEMA, displayToken, entropy, expertColors, fitStep, softmax, tokenLabels } from "./common";
export type { PlotlyFigure, VegaLiteSpec } from "./common";

export {
  compareRouting,
  compareRoutingData,
  discreteColorscale,
  expertTransitions,
  routingEntropy,
  routingEntropyData,
  routingEntropyMean,
  routingHeatmap,
  routingHeatmapPlotly,
  routingLoadData,
  textByExpert,
  textByExpertHTML,
  textByExpertLayout,
  tokenExpertData,
  tokenExpertMap,
  tokenExpertMapPlotly,
  transitionHeatmap,
  transitionHeatmapPlotly,
  transitionSankey,
} from "./routing";
export type {
  CompareOptions,
  CompareRow,
  EntropyMeanRow,
  EntropyOptions,
  EntropyRow,
  LoadOptions,
  LoadRow,
  Phase,
  TextByExpertOptions,
  TextTokenBox,
  TokenExpertOptions,
  TokenExpertRow,
  TransitionMatrix,
  TransitionOptions,
} from "./routing";

export {
  attentionCells,
  attentionHeadGrid,
  attentionHeatmap,
  attentionHeatmapPlotly,
  attentionMapOf,
  chunkBoundaries,
  layerKind,
  maskedBlocks,
} from "./attention";
export type { AttentionCell, AttentionOptions, LayerKind } from "./attention";
export { imageAttention, imageAttentionData } from "./image_attention";
export type { ImageAttentionData, ImageAttentionOptions } from "./image_attention";
export type { ImagePatchLayout } from "../sdk/models/llama4/processing_llama4";

export { kvCacheChart, kvCacheData, peakMemoryChart, peakMemoryData, weightMemoryChart, weightMemoryData } from "./memory";
export type { KVRow, PeakRow, WeightRow } from "./memory";

export { longContextMemoryChart, longContextMemoryData, longContextTimeChart, longContextTimeData } from "./long_context";
export type { LongContextMemoryRow, LongContextRow, LongContextTimeRow } from "./long_context";

export {
  INT4_GROUP,
  QUANT_BLOCK,
  QUANTIZATION_ASSUMPTIONS,
  WEIGHT_DTYPES,
  WEIGHT_DTYPE_SOURCES,
  describeEstimate,
  estimateChart,
  estimateChartData,
  estimateMemory,
} from "./estimate";
export type { EstimateOptions, EstimateRow, KVCacheEstimate, KVDType, MemoryEstimate, ModuleEstimate, WeightDType } from "./estimate";

export { compileVegaLite, imagePNG, plotlyStaticSpec, svgToPNG, toPNG, toSVG, vegaView } from "./render";
export type { CompiledVega, RenderOptions } from "./render";

export { PLOTLY_MIME, VEGALITE_MIME, htmlBundle, mimeBundle } from "./bundle";
export type { BundleOptions, MimeBundle } from "./bundle";
