// `npm start`: JupyterLab from the project's env (.venv, made by `npm install`) on notebooks/,
// bound to 127.0.0.1, with the llama4-ts kernel as the default for new notebooks. No browser is
// opened on a headless machine (no DISPLAY/WAYLAND_DISPLAY, SSH, CI). Extra arguments go to
// `jupyter lab`: `npm start -- --port 9999`.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { KERNEL_NAME, kernelDir, root, venvJupyter } from "./jupyter-env.mjs";

// LLAMA4_TS_MODEL names the checkpoint every notebook loads: check it resolves (a local folder with
// config.json, or a Hub id whose config.json downloads or is cached) before JupyterLab opens, rather
// than in the first cell of every notebook.
const chosen = process.env.LLAMA4_TS_MODEL?.trim();
if (chosen) {
  const { resolvePretrained } = createRequire(import.meta.url)(join(root, "dist", "sdk", "hub", "index.js"));
  try {
    const dir = await resolvePretrained(chosen, { required: ["config.json"] });
    console.log(`llama4-ts: LLAMA4_TS_MODEL=${chosen} (${dir})`);
  } catch (e) {
    console.error(`llama4-ts: LLAMA4_TS_MODEL=${chosen} cannot be used: ${e.message}\n` +
      "Set it to a local checkpoint folder or a Hub model id (gated repos need HF_TOKEN), or unset it for the embedded model.");
    process.exit(1);
  }
}

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
