// Process-wide engine settings.
import { native } from "../native";

/** Threads used by the engine's kernels (default: one per hardware thread; n <= 0 restores that). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n)) throw new Error(`setNumThreads expects an integer, got ${n}`);
  native().setNumThreads(n);
}

export function getNumThreads(): number {
  return native().numThreads();
}

/** Which kernel set the engine uses ("avx512", "avx2" or "scalar"; LLAMA4_TS_KERNELS=<name> forces one). */
export function simdKernels(): string {
  return native().simd();
}

/** The kernel sets this CPU can run, best first. */
export function availableKernels(): string[] {
  return native().kernelSets();
}

