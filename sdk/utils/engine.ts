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

/** Which kernel set the CPU selected ("avx2" or "scalar"). */
export function simdKernels(): string {
  return native().simd();
}

/** Anything with a cancel(): every model from_pretrained loads registers itself here. */
interface Cancellable {
  cancel(): void;
}
const liveModels = new Set<WeakRef<Cancellable>>();

/** Called by from_pretrained. Weak references: a registered model can still be garbage-collected. */
export function registerModel(model: Cancellable): void {
  liveModels.add(new WeakRef(model));
}

/**
 * Cancels the forward/generate calls in flight on every loaded model (they reject with an
 * AbortError; the models stay usable). The Jupyter kernel calls this on an interrupt.
 */
export function cancelAll(): number {
  let n = 0;
  for (const ref of liveModels) {
    const model = ref.deref();
    if (!model) liveModels.delete(ref);
    else {
      model.cancel();
      n++;
    }
  }
  return n;
}
