// Shared by setup-jupyter.mjs and start-jupyter.mjs: where the project's Python environment for
// JupyterLab lives and what the llama4-ts kernel is called.
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The project-local virtual env (override with LLAMA4_TS_VENV). */
export const venv = process.env.LLAMA4_TS_VENV ? resolve(process.env.LLAMA4_TS_VENV) : join(root, ".venv");
const bin = process.platform === "win32" ? "Scripts" : "bin";
export const venvPython = join(venv, bin, process.platform === "win32" ? "python.exe" : "python");
export const venvJupyter = join(venv, bin, process.platform === "win32" ? "jupyter.exe" : "jupyter");
export const KERNEL_NAME = "llama4-ts";
export const KERNEL_DISPLAY_NAME = "TypeScript (llama4-ts)";
export const kernelDir = join(venv, "share", "jupyter", "kernels", KERNEL_NAME);
/** NODE_PATH of the kernel: holds the `llama4-ts` forwarding package. */
export const nodePathDir = join(venv, "node_modules");
