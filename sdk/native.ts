// Loads the compiled engine (native/build/Release/llama4_native.node) and types its surface.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export interface NativeKVCache {
  readonly length: number;
  readonly batch: number;
  readonly bytes: number;
  layerBytes(): number[];
}

export interface NativeForwardRequest {
  inputIds: Int32Array;
  batch: number;
  seqLen: number;
  /**
   * [image tokens, text hidden] rows (from encodeImages) that replace, in order, the embeddings at the
   * positions where inputIds == image_token_id (batch-major, then sequence order); the row count must
   * equal the number of those positions. Without it image token ids are embedded like any token.
   */
  imageFeatures?: Float32Array;
  attentionMask?: Int32Array;
  positionIds?: Int32Array;
  cache?: NativeKVCache;
  outputHiddenStates?: boolean;
  outputRouterLogits?: boolean;
  /** attn_implementation "eager": attention over each row's whole score vector (needed for probabilities). */
  eagerAttention?: boolean;
  /** Layers whose attention probabilities to return (all heads). */
  attentionLayers?: Int32Array;
  /** [layers * experts]: 0 routed as usual, -1 never chosen, +1 always chosen. */
  expertOverride?: Int8Array;
  logitsToKeep?: number;
}

export interface NativeForwardResult {
  logits: Float32Array;
  kept: number;
  hiddenStates?: Float32Array;
  routerLogits?: Float32Array;
  /** [moe layers, batch * seq, top_k] experts each token went to (after interventions), best first. */
  routerExperts?: Int32Array;
  routerScores?: Float32Array;
  moeLayers?: number[];
  /** [attention layers, batch, heads, seq, past + seq] */
  attentions?: Float32Array;
  scratchPeakBytes: number;
}

export interface NativeEncodeImagesRequest {
  /** [tiles, channels, height, width], normalised as Llama4ImageProcessor makes them. */
  pixelValues: Float32Array;
  tiles: number;
  /** Must equal the vision config's image_size, as must width. */
  height: number;
  width: number;
  outputVisionFeatures?: boolean;
  outputHiddenStates?: boolean;
}

export interface NativeEncodeImagesResult {
  /** [tiles * tokensPerTile, text hidden]: the multimodal projector's output, ready for forward's imageFeatures. */
  imageFeatures: Float32Array;
  tokensPerTile: number;
  /** [tiles, tokensPerTile, vision_output_dim]: the vision model's output (after the pixel-shuffle adapter). */
  visionFeatures?: Float32Array;
  /** [vision layers + 1, tiles, patches + 1, vision hidden]: the encoder's input, then each layer's output. */
  hiddenStates?: Float32Array;
}

/** The vision tower as the engine read it from config.json. */
export interface NativeVisionInfo {
  /** False when the vision config is inconsistent; `reason` names the config keys. The text path works either way. */
  usable: boolean;
  reason?: string;
  /** Llama4Config.image_token_index: the <|patch|> id whose positions take image features. */
  imageTokenId: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  pixelShuffleRatio: number;
  /** Image tokens per tile ((image_size / patch_size * pixel_shuffle_ratio)^2); present when usable. */
  tokensPerTile?: number;
}

export interface NativeModel {
  forward(request: NativeForwardRequest): Promise<NativeForwardResult>;
  /** Runs the vision tower and the multimodal projector over image tiles. */
  encodeImages(request: NativeEncodeImagesRequest): Promise<NativeEncodeImagesResult>;
  /** kvCacheDtype: "float32", "bfloat16" or "int8"; the model's kv_cache_dtype when absent. */
  createCache(batch: number, kvCacheDtype?: string): NativeKVCache;
  cancel(): void;
  config(): string;
  /** `vision` is null for a text-only checkpoint (config.json without vision_config). */
  info(): { layout: string; mappedBytes: number; convertedBytes: number; vision: NativeVisionInfo | null };
  weightStats(): { module: string; dtype: string; bytes: number }[];
  /** Writes model.safetensors as a compressed-tensors checkpoint; resolves to its quantization_config (JSON). */
  saveQuantized(path: string): Promise<string>;
}

export interface MatmulOptions {
  kernels: string;
  x: Float32Array;
  tokens: number;
  weight: Float32Array | Uint16Array;
  dtype: "F32" | "BF16" | "F16";
  rows: number;
  cols: number;
  inOut: boolean;
  /** Run the product (keys [rows = n, cols = D], x = queries) on attention's scores kernel instead. */
  attentionScores?: boolean;
}

export interface NativeEngine {
  /** fbgemmFp8: FbgemmFp8Config's fields as JSON. */
  loadModel(dir: string, options: {
    dtype: string;
    fbgemmFp8?: string;
    kvCacheDtype?: string;
    /** Keep float weights used as stored in the mapped checkpoint instead of copying them (false when absent). */
    useMmap?: boolean;
    /** After each decoder layer: bytes of the text model's tensors loaded so far and in all. */
    onLayerLoaded?: (loaded: number, total: number) => void;
  }): Promise<NativeModel>;
  setNumThreads(n: number): void;
  numThreads(): number;
  simd(): string;
  kernelSets(): string[];
  setMatmulPrecision(precision: string): void;
  matmulPrecision(): string;
  /** One product on a named kernel set (tests hold every set the CPU has to one reference). */
  matmul(options: MatmulOptions): Float32Array;
  /** The same with the weight quantized first: the output and the dequantized weight [out, in] and activations. */
  matmul(options: MatmulOptions & { quantize: "q8" | "q4" | "fp8" }): { y: Float32Array; weight: Float32Array; x: Float32Array };
}

const ADDON = join("native", "build", "Release", "llama4_native.node");

function findPackageRoot(start: string): string | null {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, ADDON))) return dir;
    if (dirname(dir) === dir) return null;
  }
}

let engine: NativeEngine | null = null;

/** The native engine, loaded on first use. */
export function native(): NativeEngine {
  if (engine) return engine;
  const root = findPackageRoot(__dirname);
  if (!root) {
    throw new Error(
      `llama4-ts: the native engine is not built (${ADDON} not found above ${__dirname}). ` +
        "Run `npm install` (or `npm run build`) in the package directory.",
    );
  }
  engine = require(join(root, ADDON)) as NativeEngine;
  return engine;
}
