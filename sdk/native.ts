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
  attentionMask?: Int32Array;
  positionIds?: Int32Array;
  cache?: NativeKVCache;
  outputHiddenStates?: boolean;
  outputRouterLogits?: boolean;
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

export interface NativeModel {
  forward(request: NativeForwardRequest): Promise<NativeForwardResult>;
  createCache(batch: number): NativeKVCache;
  cancel(): void;
  config(): string;
  info(): { layout: string; mappedBytes: number; convertedBytes: number };
  weightStats(): { module: string; dtype: string; bytes: number }[];
}

export interface NativeEngine {
  loadModel(dir: string, options: { dtype: string }): Promise<NativeModel>;
  setNumThreads(n: number): void;
  numThreads(): number;
  simd(): string;
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
