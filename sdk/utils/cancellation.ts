// The registry of objects whose in-flight native work can be cancelled: every model
// from_pretrained loads registers itself, so one call (an interrupt in Jupyter, Ctrl-C in the CLI)
// stops all of it. Kept on globalThis so two copies of the SDK in one process (loaded through
// different paths) share one registry.

/** Anything that can stop its own in-flight work, e.g. a Llama4 model (`model.cancel()`). */
export interface Cancellable {
  cancel(): void;
}

const REGISTRY_KEY = Symbol.for("llama4-ts.cancellables");

function entries(): Set<WeakRef<Cancellable>> {
  const g = globalThis as unknown as Record<symbol, Set<WeakRef<Cancellable>> | undefined>;
  return (g[REGISTRY_KEY] ??= new Set());
}

/**
 * Registers `obj` so that cancelAll() calls `obj.cancel()`. Held weakly: registering a model does
 * not keep it alive. Registering the same object twice is a no-op.
 */
export function registerCancellable(obj: Cancellable): void {
  if (!obj || typeof obj.cancel !== "function") throw new TypeError("registerCancellable expects an object with a cancel() method");
  for (const ref of entries()) if (ref.deref() === obj) return;
  entries().add(new WeakRef(obj));
}

/** Removes `obj` from the registry. */
export function unregisterCancellable(obj: Cancellable): void {
  for (const ref of entries()) {
    const target = ref.deref();
    if (target === undefined || target === obj) entries().delete(ref);
  }
}

/** The objects currently registered (those still alive). */
export function registeredCancellables(): Cancellable[] {
  const out: Cancellable[] = [];
  for (const ref of entries()) {
    const target = ref.deref();
    if (target === undefined) entries().delete(ref);
    else out.push(target);
  }
  return out;
}

/**
 * Cancels the forward/generate calls in flight on every registered object (models reject them
 * with an AbortError and stay usable); returns how many were called. Errors are reported, not thrown.
 */
export function cancelAll(): number {
  let n = 0;
  for (const obj of registeredCancellables()) {
    try {
      obj.cancel();
      n++;
    } catch (err) {
      process.stderr.write(`llama4-ts: cancel() failed: ${(err as Error)?.message ?? err}\n`);
    }
  }
  return n;
}
