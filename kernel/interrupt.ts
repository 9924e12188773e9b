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

// ---------------------------------------------------------------------------------------------
// What an interrupted cell prints. tslab answers an interrupt by printing its own Error
// ("Interrupted asynchronously") with a stack trace into its internals; the kernel prints one line
// instead, saying how far a running generate got. The count comes from the generate calls in
// flight: each forward call feeds positions, and once the prompt is fed every forward yields one
// token (the prompt's last piece yields the first).

interface RunningGenerate {
  prompt: number;
  fed: number;
}

const running = new Map<object, RunningGenerate>();
const TSLAB_INTERRUPTED = "Interrupted asynchronously";

type Method = (this: object, options: Record<string, any>) => Promise<unknown>;

function lastDim(ids: unknown): number {
  if (Array.isArray(ids)) return Array.isArray(ids[0]) ? ids[0].length : ids.length;
  const dims = (ids as { dims?: number[] } | undefined)?.dims;
  return dims?.length ? dims[dims.length - 1] : 0;
}

/**
 * Makes `generate` / `forward` of a model class (and its subclasses) count the tokens of each
 * generate in flight, for the interrupt message. Idempotent per class.
 */
export function trackGenerations(cls: { prototype: object }): void {
  const proto = cls.prototype as { generate: Method; forward: Method; [TRACKED]?: boolean };
  if (Object.prototype.hasOwnProperty.call(proto, TRACKED)) return;
  const generate = proto.generate;
  const forward = proto.forward;
  proto.generate = async function (options) {
    const cached = (options?.cache ?? options?.past_key_values)?.get_seq_length?.() ?? 0;
    const run = { prompt: lastDim(options?.input_ids) - cached, fed: 0 };
    running.set(this, run);
    try {
      return await generate.call(this, options);
    } finally {
      if (running.get(this) === run) running.delete(this);
    }
  };
  proto.forward = async function (options) {
    const out = await forward.call(this, options);
    const run = running.get(this);
    if (run) run.fed += lastDim(options?.input_ids);
    return out;
  };
  Object.defineProperty(proto, TRACKED, { value: true });
}
const TRACKED = Symbol.for("llama4-ts.kernel.tracked");

/** The line an interrupted cell prints: how many tokens the running generate(s) made, if any. */
export function interruptMessage(): string {
  const runs = [...running.values()];
  if (runs.length === 0) return "interrupted";
  const tokens = runs.reduce((n, r) => n + (r.fed >= r.prompt ? r.fed - r.prompt + 1 : 0), 0);
  return `generation cancelled after ${tokens} token${tokens === 1 ? "" : "s"}; the model is still loaded`;
}

/** Replaces tslab's interrupt error and trace (written with console.error) by interruptMessage(). */
export function installInterruptMessage(): void {
  const g = globalThis as unknown as Record<symbol, boolean | undefined>;
  const key = Symbol.for("llama4-ts.kernel.interrupt-message");
  if (g[key]) return;
  g[key] = true;
  const error = console.error;
  console.error = (...args: unknown[]) => {
    if (args.length === 1 && args[0] instanceof Error && args[0].message === TSLAB_INTERRUPTED) error(interruptMessage());
    else error(...args);
  };
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
