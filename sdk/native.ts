// Loads the compiled engine (native/build/Release/llama4_native.node) and types its surface.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export interface NativeKVCache {
  readonly length: number;
  readonly batch: number;
  readonly bytes: number;
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
  logitsToKeep?: number;
}

export interface NativeForwardResult {
  logits: Float32Array;
  kept: number;
  hiddenStates?: Float32Array;
  routerLogits?: Float32Array;
  moeLayers?: number[];
}

export interface NativeModel {
  forward(request: NativeForwardRequest): Promise<NativeForwardResult>;
  createCache(batch: number): NativeKVCache;
  cancel(): void;
  config(): string;
  info(): { layout: string; mappedBytes: number; convertedBytes: number };
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
