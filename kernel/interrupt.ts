// Jupyter's interrupt button sends SIGINT to the kernel process. tslab answers it by rejecting the
// promise the running cell awaits, and nothing more: a native forward/generate keeps running on its
// worker thread, burning the CPU and holding up the next cell. Once installed, this module cancels
// every registered model on SIGINT (model.cancel() makes in-flight native calls reject with an
// AbortError; the model stays loaded).
//
// The registry is the SDK's (sdk/utils/cancellation.ts): every model from_pretrained loads is in it.

import { Cancellable, cancelAll, registerCancellable, registeredCancellables } from "../sdk/utils/cancellation";

export { cancelAll, registerCancellable, registeredCancellables, unregisterCancellable } from "../sdk/utils/cancellation";
export type { Cancellable } from "../sdk/utils/cancellation";

interface InterruptState {
  installed: boolean;
  interrupts: number;
}

// Kept on globalThis so two copies of this module in one process share one SIGINT listener.
const STATE_KEY = Symbol.for("llama4-ts.kernel.interrupt");

function state(): InterruptState {
  const g = globalThis as unknown as Record<symbol, InterruptState | undefined>;
  return (g[STATE_KEY] ??= { installed: false, interrupts: 0 });
}

function onInterrupt(): void {
  const s = state();
  s.interrupts++;
  // One cancel() per model is enough: it stops the native call in flight, and generate checks for a
  // cancel() between its steps too (a signal can land between two).
  if (registeredCancellables().length > 0) cancelAll();
  // Alone on SIGINT (a plain node script, not a kernel): do what Node would have done without us,
  // i.e. die of the signal, rather than make Ctrl-C do nothing.
  if (process.listenerCount("SIGINT") === 1) {
    process.removeListener("SIGINT", onInterrupt);
    s.installed = false;
    process.kill(process.pid, "SIGINT");
  }
}

/**
 * Installs the process-wide SIGINT listener that cancels every registered object. Idempotent.
 * The llama4-ts kernel installs it at start-up; importing "llama4-ts/kernel" installs it too, so
 * a plain tslab kernel gets the same behaviour. It does not replace tslab's own SIGINT handling
 * (which rejects the awaited promise), it adds to it.
 */
export function installInterruptHandler(): void {
  const s = state();
  if (s.installed) return;
  s.installed = true;
  process.on("SIGINT", onInterrupt);
}

/** How many interrupts this process has received since the handler was installed. */
export function interruptCount(): number {
  return state().interrupts;
}

/**
 * Installs the interrupt handler and makes sure `model` is registered (from_pretrained registers
 * models already; this is for other cancellable objects), returning it.
 */
export function cancelOnInterrupt<T extends Cancellable>(model: T): T {
  installInterruptHandler();
  registerCancellable(model);
  return model;
}
