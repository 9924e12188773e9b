// A real Jupyter kernel for tests, driven through jupyter_client (test/helpers/jupyter_driver.py)
// from the project's Python env (.venv, made by `npm install`).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const ROOT = resolve(__dirname, "..", "..");
export const VENV = process.env.LLAMA4_TS_VENV ? resolve(process.env.LLAMA4_TS_VENV) : join(ROOT, ".venv");
export const VENV_PYTHON = join(VENV, "bin", "python");
export const KERNEL_NAME = "llama4-ts";

/**
 * Why the Jupyter suites cannot run here, or null when they can. Missing pieces skip the suites
 * only where the Jupyter set-up was skipped on purpose (LLAMA4_TS_SKIP_JUPYTER=1) outside CI;
 * anywhere else they run and fail, saying what is missing.
 */
export function jupyterSkipReason(): string | null {
  if (process.env.CI) return null;
  if (process.env.LLAMA4_TS_SKIP_JUPYTER === "1" && !existsSync(VENV_PYTHON)) {
    return "LLAMA4_TS_SKIP_JUPYTER=1: no Python env for Jupyter (run npm install without it)";
  }
  return null;
}

export function requireVenv(): void {
  if (!existsSync(VENV_PYTHON)) throw new Error(`${VENV_PYTHON} is missing: run \`npm install\` (it sets up the Jupyter env)`);
  if (!existsSync(join(VENV, "share", "jupyter", "kernels", KERNEL_NAME, "kernel.json"))) {
    throw new Error(`the ${KERNEL_NAME} kernelspec is missing from ${VENV}: run \`npm install\``);
  }
}

export interface KernelMessage {
  msg_type: string;
  content: Record<string, any>;
}

export interface ExecuteResult {
  status: "ok" | "error" | "abort" | "timeout";
  messages: KernelMessage[];
  elapsed_s: number;
  interrupt_to_reply_s?: number;
  /** Concatenated stdout / stderr stream text. */
  stdout: string;
  stderr: string;
}

export interface ExecuteOptions {
  timeout_s?: number;
  /** Interrupt the kernel (SIGINT) this many seconds after sending the cell. */
  interrupt_after_s?: number;
}

export class KernelSession {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: any) => void>();
  private readyResolve!: (info: any) => void;
  private readonly ready: Promise<any>;
  private stderrTail = "";
  private exited = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.ready = new Promise((resolveReady, rejectReady) => {
      this.readyResolve = resolveReady;
      child.on("exit", (code) => {
        this.exited = true;
        const err = new Error(`jupyter driver exited (${code}): ${this.stderrTail.slice(-2000)}`);
        rejectReady(err);
        for (const w of this.waiting.values()) w({ status: "driver-exited", messages: [], elapsed_s: 0, error: err.message });
        this.waiting.clear();
      });
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      let msg: any;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.event === "ready") this.readyResolve(msg);
      else if (this.waiting.has(msg.id)) {
        this.waiting.get(msg.id)!(msg);
        this.waiting.delete(msg.id);
      }
    });
    child.stderr.on("data", (d) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-8000);
    });
  }

  /** Starts a kernel (default: the llama4-ts kernelspec) whose working directory is `cwd`. */
  static async start(cwd: string, kernel = KERNEL_NAME): Promise<{ session: KernelSession; startup_s: number; resource_dir: string }> {
    requireVenv();
    const child = spawn(VENV_PYTHON, [join(ROOT, "test", "helpers", "jupyter_driver.py"), "--kernel", kernel, "--cwd", cwd], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const session = new KernelSession(child);
    const info = await session.ready;
    return { session, startup_s: info.startup_s, resource_dir: info.resource_dir };
  }

  async execute(code: string, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    if (this.exited) throw new Error("the kernel driver has exited");
    const id = this.nextId++;
    const reply = new Promise<any>((r) => this.waiting.set(id, r));
    this.child.stdin.write(JSON.stringify({ id, code, timeout: options.timeout_s ?? 60, interrupt_after: options.interrupt_after_s ?? null }) + "\n");
    const r = await reply;
    const stream = (name: string) =>
      (r.messages as KernelMessage[]).filter((m) => m.msg_type === "stream" && m.content.name === name).map((m) => m.content.text).join("");
    return { ...r, stdout: stream("stdout"), stderr: stream("stderr") };
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.stdin.write(JSON.stringify({ op: "shutdown" }) + "\n");
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
