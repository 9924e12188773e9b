// Jupyter set-up, run by `npm install` (the "postprepare" script, after the native build and tsc):
//   1. a project-local Python virtual env (.venv/) with JupyterLab, nbclient, nbformat,
//      jupyter_client and plotly, pinned by kernel/requirements.txt + kernel/constraints.txt;
//   2. the "llama4-ts" kernelspec inside that env (tslab + kernel/launcher.ts), whose NODE_PATH
//      points at a small `llama4-ts` package forwarding to this checkout, so notebooks anywhere
//      can `import { pipeline } from "llama4-ts"` and `import { display } from "llama4-ts/kernel"`.
//
// Idempotent and fast when nothing changed: pip runs only when the requirements' hash differs from
// the stamp in the env. LLAMA4_TS_SKIP_JUPYTER=1 skips all of it (the SDK works without it).
// LLAMA4_TS_PYTHON picks the Python that creates the env (default python3), LLAMA4_TS_VENV its place.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve, sep } from "node:path";

import { KERNEL_DISPLAY_NAME, KERNEL_NAME, kernelDir, nodePathDir, root, venv, venvPython } from "./jupyter-env.mjs";

const started = Date.now();
const log = (msg) => console.log(`llama4-ts jupyter: ${msg}`);

const PYTHON_HINT = "The Jupyter integration (kernel/) needs Python >= 3.9 with the venv module (Debian: apt-get install python3-venv).";

function fail(msg, hint = PYTHON_HINT) {
  console.error(`\nllama4-ts jupyter: set-up failed: ${msg}\n  ${hint}\n` +
    "  To install the SDK without the Jupyter integration, set LLAMA4_TS_SKIP_JUPYTER=1.\n");
  process.exit(1);
}

if (process.env.LLAMA4_TS_SKIP_JUPYTER === "1") {
  log("skipped (LLAMA4_TS_SKIP_JUPYTER=1): no Python env, no kernelspec (test/kernel.test.ts and test/browser.test.ts skip their Jupyter parts outside CI)");
  process.exit(0);
}

// npm runs "prepare" (and so this) also when llama4-ts is installed from git as a dependency of
// another project, in a temporary clone; a Python env there would be thrown away. Only set up when
// npm was started in this checkout (INIT_CWD is where npm was invoked).
const real = (p) => (existsSync(p) ? realpathSync(p) : resolve(p));
const initCwd = real(process.env.INIT_CWD || root);
if (initCwd !== real(root) && !initCwd.startsWith(real(root) + sep)) {
  log(`skipped: npm runs in ${initCwd}, not in this checkout (${root}); run \`node scripts/setup-jupyter.mjs\` here to set up Jupyter`);
  process.exit(0);
}

function run(cmd, args, options = {}) {
  return spawnSync(cmd, args, { encoding: "utf8", ...options });
}

function pythonVersion(py) {
  const r = run(py, ["-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"]);
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim();
}

// 1. The virtual env.
const requirements = join(root, "kernel", "requirements.txt");
const constraints = join(root, "kernel", "constraints.txt");
const stamp = join(venv, ".llama4-ts-requirements.sha256");
const hash = createHash("sha256").update(readFileSync(requirements)).update(readFileSync(constraints)).digest("hex");

// The stamp is written only after a successful pip install of exactly these files.
const upToDate = existsSync(stamp) && readFileSync(stamp, "utf8").trim() === hash && existsSync(venvPython) &&
  run(venvPython, ["-c", "pass"]).status === 0;

if (!upToDate) {
  if (!existsSync(venvPython) || run(venvPython, ["-c", "pass"]).status !== 0) {
    const base = process.env.LLAMA4_TS_PYTHON || (process.platform === "win32" ? "python" : "python3");
    const version = pythonVersion(base);
    if (!version) fail(`"${base}" is missing or lacks the venv/ensurepip modules`);
    const [major, minor] = version.split(".").map(Number);
    if (major < 3 || (major === 3 && minor < 9)) fail(`"${base}" is Python ${version}; need >= 3.9`);
    log(`creating ${venv} with ${base} (Python ${version})`);
    if (existsSync(venv)) {
      // A broken env (e.g. its base Python was removed) is rebuilt; anything else there is not ours.
      if (!existsSync(join(venv, "pyvenv.cfg"))) fail(`${venv} exists and is not a Python virtual env`, "Move it away, or point LLAMA4_TS_VENV elsewhere.");
      rmSync(venv, { recursive: true, force: true });
    }
    const r = run(base, ["-m", "venv", venv], { stdio: "inherit" });
    if (r.status !== 0) fail(`"${base} -m venv ${venv}" failed`);
  }
  log("installing kernel/requirements.txt (JupyterLab, nbclient, plotly, ...)");
  const r = run(venvPython, ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
    "-r", requirements, "-c", constraints], { stdio: "inherit" });
  if (r.status !== 0) fail("pip install -r kernel/requirements.txt failed", "Is PyPI (or your pip index) reachable? pip's output is above.");
  writeFileSync(stamp, hash + "\n");
}

// 2. The forwarding package on the kernel's NODE_PATH: .venv/node_modules/llama4-ts/ with
//    package.json, one <name>.{js,d.ts} per subpath of package.json "exports" (`llama4-ts/kernel`,
//    `llama4-ts/viz`: tslab's TypeScript resolves like Node 10 and ignores "exports"), and symlinks dist/ and
//    node_modules/ into this checkout. Everything stays under one package folder so TypeScript
//    sees the SDK's declarations as a package (and names their types "llama4-ts/..."), and Node
//    follows the symlinks to the checkout's files (the same module instances the kernel uses).
function writeIfChanged(file, content) {
  if (existsSync(file) && readFileSync(file, "utf8") === content) return false;
  writeFileSync(file, content);
  return true;
}

function linkIfChanged(link, target) {
  let current = null;
  try {
    current = readlinkSync(link);
  } catch {
    // missing (or not a link): replaced below
  }
  if (current === target) return false;
  rmSync(link, { recursive: true, force: true });
  symlinkSync(target, link, "junction");
  return true;
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const shim = join(nodePathDir, "llama4-ts");
mkdirSync(shim, { recursive: true });
const note = `// Written by scripts/setup-jupyter.mjs: the llama4-ts checkout at ${root}, seen as a package.\n`;
let changed = false;
changed = writeIfChanged(join(shim, "package.json"), JSON.stringify({
  name: "llama4-ts",
  version: pkg.version,
  private: true,
  description: `The llama4-ts checkout at ${root}, for the llama4-ts Jupyter kernel (written by scripts/setup-jupyter.mjs)`,
  main: "dist/sdk/index.js",
  types: "dist/sdk/index.d.ts",
}, null, 2) + "\n") || changed;
for (const [subpath, entry] of Object.entries(pkg.exports)) {
  if (subpath === ".") continue;
  const name = subpath.slice(2); // "./viz" -> "viz"
  const target = entry.default.replace(/^\.\//, "./").replace(/\.js$/, "");
  changed = writeIfChanged(join(shim, `${name}.js`), `${note}module.exports = require("${target}.js");\n`) || changed;
  changed = writeIfChanged(join(shim, `${name}.d.ts`), `${note}export * from "${target}";\n`) || changed;
}
for (const f of ["index.js", "index.d.ts"]) rmSync(join(shim, f), { force: true }); // earlier layout
changed = linkIfChanged(join(shim, "dist"), join(root, "dist")) || changed;
changed = linkIfChanged(join(shim, "node_modules"), join(root, "node_modules")) || changed;

// 3. The kernelspec, in the env's share/jupyter/kernels (what `jupyter kernelspec list` reads).
const spec = {
  argv: [process.execPath, join(root, "dist", "kernel", "launcher.js"), "--config-path", "{connection_file}"],
  display_name: KERNEL_DISPLAY_NAME,
  language: "typescript",
  interrupt_mode: "signal",
  env: { NODE_PATH: nodePathDir },
  metadata: { "llama4-ts": { root, tslab: "1.0.22" } },
};
mkdirSync(kernelDir, { recursive: true });
changed = writeIfChanged(join(kernelDir, "kernel.json"), JSON.stringify(spec, null, 2) + "\n") || changed;

if (!upToDate || changed) {
  const r = run(venvPython, ["-m", "jupyter", "kernelspec", "list", "--json"]);
  let specs = {};
  try {
    specs = JSON.parse(r.stdout).kernelspecs ?? {};
  } catch {
    // reported below
  }
  if (!specs[KERNEL_NAME]) {
    fail(`the "${KERNEL_NAME}" kernelspec written to ${kernelDir} is not listed by jupyter kernelspec list`, r.stderr.trim() || "(no output)");
  }
  log(`kernelspec "${KERNEL_NAME}" (${KERNEL_DISPLAY_NAME}) installed in ${specs[KERNEL_NAME].resource_dir}`);
}
log(`${upToDate && !changed ? "up to date" : "ready"} (${((Date.now() - started) / 1000).toFixed(1)}s); \`npm start\` opens JupyterLab`);
