// One real-browser check of the Jupyter integration: JupyterLab (from the project's env) shows the
// executed routing notebook (notebooks/10-moe-routing.ipynb, on the embedded model) in Debian's
// chromium driven by playwright-core. Asserts the expert-load heatmap is drawn by JupyterLab's Vega
// renderer with non-blank pixels (its screenshot is the README's picture of the routing view), and
// records which renderer JupyterLab picks when a bundle also has text/html.
// Needs /usr/bin/chromium (apt-get install chromium; .ci/run installs it). Without it the test is
// skipped, except under CI, where it fails.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import sharp from "sharp";
import { chromium, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { jupyterSkipReason, requireVenv, ROOT, VENV, VENV_PYTHON } from "./helpers/jupyter";

const CHROMIUM = process.env.LLAMA4_TS_CHROMIUM ?? "/usr/bin/chromium";
const skipReason = !process.env.CI && !existsSync(CHROMIUM)
  ? `${CHROMIUM} not found (apt-get install chromium); the browser test runs in CI`
  : jupyterSkipReason();
if (skipReason) console.warn(`browser.test.ts: skipped: ${skipReason}`);

const VEGALITE = "application/vnd.vegalite.v5+json";

/** An 8x8 heatmap like the routing plots (layer x expert load). */
function heatmapSpec(): object {
  const values: { layer: number; expert: number; load: number }[] = [];
  for (let layer = 0; layer < 8; layer++) {
    for (let expert = 0; expert < 8; expert++) values.push({ layer, expert, load: Math.round(100 * Math.abs(Math.sin(layer * 1.3 + expert * 0.7))) / 100 });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    width: 240,
    height: 240,
    data: { values },
    mark: "rect",
    encoding: {
      x: { field: "expert", type: "ordinal" },
      y: { field: "layer", type: "ordinal" },
      color: { field: "load", type: "quantitative", scale: { scheme: "viridis" } },
    },
  };
}

function notebook(cells: string[]): string {
  return JSON.stringify({
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: "llama4-ts", display_name: "TypeScript (llama4-ts)", language: "typescript" },
      language_info: { name: "typescript" },
    },
    cells: cells.map((source, i) => ({ cell_type: "code", id: `cell-${i}`, metadata: {}, execution_count: null, outputs: [], source })),
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForServer(url: string, deadlineMs: number, server: ChildProcess, log: () => string): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (server.exitCode !== null) throw new Error(`jupyter lab exited (${server.exitCode}):\n${log()}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`jupyter lab did not answer ${url} in ${deadlineMs} ms:\n${log()}`);
}

describe.skipIf(!!skipReason)("JupyterLab in chromium", () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let serverLog = "";
  let context: BrowserContext | undefined;
  let base = "";
  let token = "";

  beforeAll(async () => {
    requireVenv();
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (CI must install it, see .ci/run)`);
    dir = mkdtempSync(join(tmpdir(), "llama4-ts-lab-"));
    const nbDir = join(dir, "notebooks");
    mkdirSync(nbDir);
    const spec = JSON.stringify(heatmapSpec());
    const png = (await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 68, g: 1, b: 84 } } }).png().toBuffer()).toString("base64");
    writeFileSync(join(nbDir, "heatmap.ipynb"), notebook([
      `import { display } from "llama4-ts/kernel";\n` +
      `const spec = ${spec};\n` +
      `const png = ${JSON.stringify(png)};\n` +
      `display({ ${JSON.stringify(VEGALITE)}: spec, "image/png": png, "text/plain": "expert load heatmap" });`,
      `display({ ${JSON.stringify(VEGALITE)}: spec, "text/html": "<p class='html-fallback'>html fallback</p>", "image/png": png, "text/plain": "expert load heatmap" });`,
    ]));
    copyFileSync(join(ROOT, "notebooks", "10-moe-routing.ipynb"), join(nbDir, "10-moe-routing.ipynb"));
    // Execute them with the kernel first, so the saved notebooks carry the outputs.
    const run = spawnSync(VENV_PYTHON, [join(ROOT, "kernel", "execute-notebooks.py"), nbDir, "--write"], { encoding: "utf8", timeout: 240_000 });
    expect(run.status, run.stdout + run.stderr).toBe(0);

    const port = await freePort();
    token = randomBytes(16).toString("hex");
    base = `http://127.0.0.1:${port}`;
    const env = { ...process.env, JUPYTER_RUNTIME_DIR: join(dir, "runtime"), JUPYTER_CONFIG_DIR: join(dir, "config") };
    server = spawn(join(VENV, "bin", "jupyter"), [
      "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", `--ServerApp.port=${port}`, "--ServerApp.port_retries=0",
      `--IdentityProvider.token=${token}`, `--ServerApp.root_dir=${nbDir}`,
      `--LabApp.workspaces_dir=${join(dir, "workspaces")}`, `--LabApp.user_settings_dir=${join(dir, "settings")}`,
      ...(process.getuid?.() === 0 ? ["--allow-root"] : []),
    ], { env, stdio: ["ignore", "pipe", "pipe"] });
    server.stdout!.on("data", (d) => (serverLog += d));
    server.stderr!.on("data", (d) => (serverLog += d));
    await waitForServer(`${base}/api/status?token=${token}`, 60_000, server, () => serverLog);

    context = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 1000 },
    });
  }, 300_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once("exit", r));
      server.kill("SIGTERM");
      const t = setTimeout(() => server!.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the routing notebook's expert-load heatmap renders as a chart with non-blank pixels", async () => {
    const page = context!.pages()[0] ?? (await context!.newPage());
    await page.goto(`${base}/lab/tree/10-moe-routing.ipynb?token=${token}`);
    // The first rich output of the notebook is routingHeatmap(trace, { split: true }).
    const vega = page.locator(".jp-Notebook .jp-OutputArea-output.jp-RenderedVegaCommon5").first();
    await vega.waitFor({ timeout: 60_000 });
    const chart = vega.locator("canvas.marks, svg.marks").first();
    await chart.waitFor({ state: "visible", timeout: 60_000 });
    const box = await chart.boundingBox();
    expect(box!.width).toBeGreaterThan(200);
    expect(box!.height).toBeGreaterThan(100);
    mkdirSync(join(ROOT, "test-results"), { recursive: true });
    const shot = await vega.screenshot({ path: join(ROOT, "test-results", "routing-view.png") });
    await page.screenshot({ path: join(ROOT, "test-results", "browser-jupyterlab.png") });

    const { data, info } = await sharp(shot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const colors = new Set<number>();
    let nonWhite = 0;
    for (let i = 0; i < data.length; i += 3) {
      colors.add(((data[i] >> 3) << 10) | ((data[i + 1] >> 3) << 5) | (data[i + 2] >> 3));
      if (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235) nonWhite++;
    }
    expect(colors.size).toBeGreaterThan(20); // many shades, not a flat image
    expect(nonWhite / (info.width * info.height)).toBeGreaterThan(0.05); // cells, labels and legend drawn
    // Drawn by Vega, not the PNG fallback of the bundle.
    expect(await vega.locator("img").count()).toBe(0);
  });

  test("a hand-made Vega-Lite bundle renders with JupyterLab's Vega renderer", async () => {
    const page = await context!.newPage(); // a fresh page: only this notebook's outputs on it
    await page.goto(`${base}/lab/tree/heatmap.ipynb?token=${token}`);
    const outputs = page.locator(".jp-Notebook .jp-OutputArea-output");
    await outputs.nth(1).waitFor({ timeout: 60_000 });
    expect(await outputs.nth(0).getAttribute("class")).toContain("jp-RenderedVegaCommon5");
    await outputs.nth(0).locator("canvas.marks, svg.marks").first().waitFor({ state: "visible", timeout: 60_000 });
  });

  test("a bundle that also has text/html is shown as the HTML (JupyterLab ranks text/html above Vega-Lite)", async () => {
    const page = context!.pages().at(-1)!; // the page of the previous test
    const second = page.locator(".jp-Notebook .jp-OutputArea-output").nth(1);
    await second.locator(".html-fallback").waitFor({ timeout: 30_000 });
    const classes = (await second.getAttribute("class"))!.split(/\s+/);
    expect(classes).toContain("jp-RenderedHTMLCommon");
    expect(classes).not.toContain("jp-RenderedVegaCommon5");
    expect(await second.locator(".marks").count()).toBe(0);
  });
});
