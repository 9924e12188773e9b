// `npm start`: JupyterLab from the project's env (.venv, made by `npm install`) on notebooks/,
// bound to 127.0.0.1, with the llama4-ts kernel as the default for new notebooks. No browser is
// opened on a headless machine (no DISPLAY/WAYLAND_DISPLAY, SSH, CI). Extra arguments go to
// `jupyter lab`: `npm start -- --port 9999`.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { KERNEL_NAME, kernelDir, root, venvJupyter } from "./jupyter-env.mjs";

if (!existsSync(venvJupyter) || !existsSync(join(kernelDir, "kernel.json"))) {
  console.error("llama4-ts: the Jupyter env is not set up; run `npm install` (without LLAMA4_TS_SKIP_JUPYTER=1) first.");
  process.exit(1);
}

const headless = !!process.env.CI || !!process.env.SSH_CONNECTION ||
  (process.platform === "linux" && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY);

const args = [
  "lab",
  "--ServerApp.ip=127.0.0.1",
  `--ServerApp.root_dir=${join(root, "notebooks")}`,
  `--MappingKernelManager.default_kernel_name=${KERNEL_NAME}`,
  ...(headless ? ["--no-browser"] : []),
  // Containers and CI machines often run as root, which jupyter refuses without this.
  ...(process.getuid?.() === 0 ? ["--allow-root"] : []),
  ...process.argv.slice(2),
];
console.log(`llama4-ts: starting JupyterLab on notebooks/ (${headless ? "headless: open the URL below yourself" : "opening a browser"})`);
const child = spawn(venvJupyter, args, { cwd: root, stdio: ["inherit", "inherit", "pipe"] });

// Jupyter logs to stderr; pass it through and repeat the URL (with its token) once, plainly.
let shown = false;
let pending = "";
child.stderr.on("data", (chunk) => {
  process.stderr.write(chunk);
  if (shown) return;
  pending += chunk.toString();
  const m = pending.match(/http:\/\/127\.0\.0\.1:\d+\/lab\?token=[0-9a-f]+/);
  if (m) {
    shown = true;
    console.log(`\nllama4-ts: JupyterLab is at ${m[0]}\n`);
  } else if (pending.length > 65536) {
    pending = pending.slice(-4096);
  }
});
// Ctrl-C reaches jupyter directly (same process group); keep this wrapper alive until it exits.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => child.kill("SIGTERM"));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
