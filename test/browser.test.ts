/// <reference lib="dom" />
// The notebooks as a person sees them: one JupyterLab server (from the project's env), Debian's
// chromium driven by playwright-core, and Run All on every notebooks/*.ipynb in turn, as a user
// clicks it. For each output: no error, nothing wider than the output area, Plotly figures live
// (a .js-plotly-plot with its SVG, no hover needed), Vega-Lite charts drawn by JupyterLab's Vega
// renderer. A hand-made notebook records which renderer JupyterLab picks for the bundle shapes the
// viz/ bundles rely on. Screenshots of every notebook and the measured widths
// (browser-widths.json) go to test-results/ (not committed); the routing heatmap's screenshot is
// the README's picture.
// Needs /usr/bin/chromium (apt-get install chromium; .ci/run installs it). Without it the suite is
// skipped, except under CI, where it fails.
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import sharp from "sharp";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { jupyterSkipReason, requireVenv, ROOT, VENV } from "./helpers/jupyter";
import { FIT_VIEW } from "../viz/common";

const CHROMIUM = process.env.LLAMA4_TS_CHROMIUM ?? "/usr/bin/chromium";
const skipReason = !process.env.CI && !existsSync(CHROMIUM)
  ? `${CHROMIUM} not found (apt-get install chromium); the browser test runs in CI`
  : jupyterSkipReason();
if (skipReason) console.warn(`browser.test.ts: skipped: ${skipReason}`);

const RESULTS = join(ROOT, "test-results");
const NOTEBOOKS = readdirSync(join(ROOT, "notebooks")).filter((f) => f.endsWith(".ipynb")).sort();
const VEGALITE = "application/vnd.vegalite.v5+json";
const PLOTLY = "application/vnd.plotly.v1+json";

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

/** JupyterLab's server info file (jpserver-<pid>.json in its runtime dir), once it is listening. */
async function waitForServer(runtimeDir: string, deadlineMs: number, server: ChildProcess, log: () => string): Promise<{ url: string }> {
  const end = Date.now() + deadlineMs;
  const infoFile = join(runtimeDir, `jpserver-${server.pid}.json`);
  while (Date.now() < end) {
    if (server.exitCode !== null) throw new Error(`jupyter lab exited (${server.exitCode}):\n${log()}`);
    if (existsSync(infoFile)) {
      try {
        const info = JSON.parse(readFileSync(infoFile, "utf8")) as { url: string };
        const r = await fetch(`${info.url.replace(/\/$/, "")}/api/status`);
        if (r.status < 500) return info;
      } catch {
        // written but not answering yet
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`jupyter lab wrote no ${infoFile} / did not answer in ${deadlineMs} ms:\n${log()}`);
}

/** What the page shows for one output, measured in the browser. */
interface OutputFacts {
  cell: number;
  /** Renderer class of the output (jp-RenderedPlotly, jp-RenderedVegaCommon5, ...). */
  renderer: string;
  mime: string;
  /** Width of the output area (px) and the widest extent of anything inside it, from its left edge. */
  area: number;
  width: number;
  height: number;
  /** Width of the figure itself (the widest canvas, svg or img in the output), 0 when none. */
  chart: number;
  error: boolean;
  plotlyLive: boolean;
  plotlyImage: boolean;
  vegaDrawn: boolean;
  text: string;
}

/** Every output of the open notebook, cell by cell. */
function measureOutputs(page: Page): Promise<OutputFacts[]> {
  return page.evaluate(() => {
    const facts: OutputFacts[] = [];
    const notebook = (window as any).jupyterapp.shell.currentWidget.content.node as HTMLElement;
    notebook.querySelectorAll(".jp-Cell.jp-CodeCell").forEach((cell, index) => {
      cell.querySelectorAll(".jp-OutputArea-output").forEach((out) => {
        const box = out.getBoundingClientRect();
        let right = box.left;
        let bottom = box.top;
        for (const el of Array.from(out.querySelectorAll("*"))) {
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.height === 0 || getComputedStyle(el).display === "none") continue;
          right = Math.max(right, r.right);
          bottom = Math.max(bottom, r.bottom);
        }
        const mime = out.getAttribute("data-mime-type") ?? "";
        const renderer = Array.from(out.classList).find((c) => c.startsWith("jp-Rendered") && c !== "jp-RenderedHTMLCommon") ??
          (out.classList.contains("jp-RenderedHTMLCommon") ? "jp-RenderedHTMLCommon" : "");
        const img = out.querySelector("img.plot-img") as HTMLImageElement | null;
        let chart = 0;
        for (const el of Array.from(out.querySelectorAll("canvas, svg.marks, svg.main-svg, img"))) {
          if (el.closest("svg") !== el && el.tagName.toLowerCase() !== "canvas" && el.tagName.toLowerCase() !== "img") continue;
          chart = Math.max(chart, Math.round(el.getBoundingClientRect().width));
        }
        facts.push({
          cell: index,
          renderer,
          mime,
          area: Math.round(box.width),
          width: Math.round(Math.max(right - box.left, out.scrollWidth)),
          height: Math.round(bottom - box.top),
          chart,
          // tslab writes a failing cell's error to stderr (no error output of its own); stderr made
          // only of the SDK's "llama4-ts: ..." warning lines is a warning, not an error.
          error: mime === "application/vnd.jupyter.stderr" && !/^(llama4-ts: [^\n]*\n?)+$/.test((out.textContent ?? "").trim()),
          plotlyLive: !!out.querySelector(".js-plotly-plot .main-svg"),
          plotlyImage: !!img && !!img.getAttribute("src") && getComputedStyle(img).display !== "none",
          vegaDrawn: !!out.querySelector("canvas.marks, svg.marks"),
          text: (out.textContent ?? "").slice(0, 300),
        });
      });
    });
    return facts;
  });
}

/**
 * Opens a notebook in a workspace of its own (so no tab of an earlier test is restored next to it),
 * clears it, Run All (as the menu does), and waits for the last cell to finish.
 */
async function runAll(page: Page, base: string, token: string, path: string, timeoutMs: number): Promise<{ seconds: number; cells: number; executed: number }> {
  const workspace = path.replace(/\W+/g, "-");
  await page.goto(`${base}/lab/workspaces/${workspace}/tree/${path}?token=${token}`);
  await page.waitForFunction((path) => {
    const app = (window as any).jupyterapp;
    const w = app?.shell?.currentWidget;
    return w?.context?.path === path && !!w.sessionContext?.session?.kernel && w.sessionContext.session.kernel.status === "idle" &&
      !!w.content?.widgets?.length;
  }, path, { timeout: 120_000, polling: 250 });
  const t0 = Date.now();
  const ran = await page.evaluate(async (ms) => {
    const app = (window as any).jupyterapp;
    await app.commands.execute("notebook:clear-all-cell-outputs");
    const done = app.commands.execute("notebook:run-all-cells");
    const timer = new Promise((_, reject) => setTimeout(() => reject(new Error(`Run All took over ${ms} ms`)), ms));
    await Promise.race([done, timer]);
    const cells = app.shell.currentWidget.content.widgets.filter((c: any) => c.model.type === "code");
    return { cells: cells.length, executed: cells.filter((c: any) => c.model.executionCount !== null).length };
  }, timeoutMs);
  return { seconds: (Date.now() - t0) / 1000, ...ran };
}

describe.skipIf(!!skipReason)("JupyterLab in chromium: Run All on every notebook", () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let serverLog = "";
  let context: BrowserContext | undefined;
  let base = "";
  let token = "";
  const widths: Record<string, OutputFacts[]> = {};

  beforeAll(async () => {
    requireVenv();
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (CI must install it, see .ci/run)`);
    dir = mkdtempSync(join(tmpdir(), "llama4-ts-lab-"));
    // The notebooks are copied (Run All must not touch the committed files); their relative paths
    // (images/, ../test/fixtures) resolve through symlinks into the checkout.
    const nbDir = join(dir, "notebooks");
    mkdirSync(nbDir);
    for (const name of NOTEBOOKS) copyFileSync(join(ROOT, "notebooks", name), join(nbDir, name));
    symlinkSync(join(ROOT, "notebooks", "images"), join(nbDir, "images"));
    symlinkSync(join(ROOT, "test"), join(dir, "test"));
    const spec = JSON.stringify(heatmapSpec());
    const png = (await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 68, g: 1, b: 84 } } }).png().toBuffer()).toString("base64");
    const fig = JSON.stringify({ data: [{ type: "heatmap", z: [[1, 2], [3, 4]] }], layout: {} });
    writeFileSync(join(dir, "bundles.ipynb"), notebook([
      `import { display } from "llama4-ts/kernel";\nconst spec = ${spec};\nconst png = ${JSON.stringify(png)};\nconst fig = ${fig};\n` +
      `display({ ${JSON.stringify(VEGALITE)}: spec, "image/png": png, "text/plain": "vega + png" });`,
      `display({ ${JSON.stringify(VEGALITE)}: spec, "text/html": "<p class='html-fallback'>html fallback</p>", "image/png": png, "text/plain": "vega + html" });`,
      `display({ ${JSON.stringify(PLOTLY)}: fig, "text/html": "<p>static</p>", "image/png": png, "text/plain": "plotly + png" });`,
      `display({ ${JSON.stringify(PLOTLY)}: fig, "text/html": "<p>static</p>", "text/plain": "plotly + html" });`,
      `display({ ${JSON.stringify(VEGALITE)}: { ...spec, ...${JSON.stringify(FIT_VIEW)}, height: 120 }, "text/plain": "vega, FIT_VIEW" });`,
    ]));
    // One cell at a time, the whole notebook in the DOM (no windowing), no autosave.
    const settings = join(dir, "settings");
    mkdirSync(join(settings, "@jupyterlab", "notebook-extension"), { recursive: true });
    mkdirSync(join(settings, "@jupyterlab", "docmanager-extension"), { recursive: true });
    writeFileSync(join(settings, "@jupyterlab", "notebook-extension", "tracker.jupyterlab-settings"), JSON.stringify({ windowingMode: "none" }));
    writeFileSync(join(settings, "@jupyterlab", "docmanager-extension", "plugin.jupyterlab-settings"), JSON.stringify({ autosave: false }));
    mkdirSync(join(settings, "@jupyterlab", "apputils-extension"), { recursive: true });
    writeFileSync(join(settings, "@jupyterlab", "apputils-extension", "notification.jupyterlab-settings"), JSON.stringify({ fetchNews: "false" }));

    token = randomBytes(16).toString("hex");
    const runtimeDir = join(dir, "runtime");
    const env = { ...process.env, JUPYTER_RUNTIME_DIR: runtimeDir, JUPYTER_CONFIG_DIR: join(dir, "config") };
    // Port 0: the OS picks a free port as the server binds, so no other process can take it between
    // choosing and binding (a port chosen ahead could be); the server's info file says which.
    server = spawn(join(VENV, "bin", "jupyter"), [
      "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",
      `--IdentityProvider.token=${token}`, `--ServerApp.root_dir=${dir}`, "--LabApp.expose_app_in_browser=True",
      `--LabApp.workspaces_dir=${join(dir, "workspaces")}`, `--LabApp.user_settings_dir=${settings}`,
      ...(process.getuid?.() === 0 ? ["--allow-root"] : []),
    ], { env, stdio: ["ignore", "pipe", "pipe"] });
    server.stdout!.on("data", (d) => (serverLog += d));
    server.stderr!.on("data", (d) => (serverLog += d));
    // Start-up takes ~5 s idle but far longer when the rest of the suite loads both cores.
    const info = await waitForServer(runtimeDir, 240_000, server, () => serverLog);
    base = info.url.replace(/\/$/, "");

    context = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 1000 },
    });
    mkdirSync(RESULTS, { recursive: true });
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
    if (Object.keys(widths).length) writeFileSync(join(RESULTS, "browser-widths.json"), JSON.stringify(widths, null, 1));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("JupyterLab's renderer choice: Vega-Lite over PNG, HTML over Vega-Lite, Plotly shows a PNG until hovered; a FIT_VIEW chart is as wide as asked", async () => {
    const page = await context!.newPage();
    const run = await runAll(page, base, token, "bundles.ipynb", 120_000);
    expect(run.executed).toBe(5);
    const cells = page.locator(".jp-Notebook .jp-Cell.jp-CodeCell");
    await cells.nth(0).locator("canvas.marks, svg.marks").first().waitFor({ state: "visible", timeout: 60_000 });
    await cells.nth(3).locator(".js-plotly-plot .main-svg").first().waitFor({ timeout: 60_000 }).catch(() => undefined);
    await cells.nth(4).locator("canvas.marks, svg.marks").first().waitFor({ state: "visible", timeout: 60_000 });
    await page.screenshot({ path: join(RESULTS, "notebook-bundles.png") });
    const facts = await measureOutputs(page);
    expect(facts.map((f) => f.cell)).toEqual([0, 1, 2, 3, 4]);
    expect(facts.map((f) => f.renderer)).toEqual(["jp-RenderedVegaCommon5", "jp-RenderedHTML", "jp-RenderedPlotly", "jp-RenderedPlotly", "jp-RenderedVegaCommon5"]);
    expect(facts[0].vegaDrawn).toBe(true);
    // Text/html ranks above Vega-Lite: the chart is not drawn. Hence no text/html in Vega-Lite bundles.
    expect(facts[1].vegaDrawn).toBe(false);
    expect(facts[1].text).toContain("html fallback");
    // jupyterlab-plotly shows a bundle's image/png and builds the plot only on mouseenter: the
    // reason Plotly bundles carry no PNG. Without it the plot is live at once.
    expect([facts[2].plotlyImage, facts[2].plotlyLive]).toEqual([true, false]);
    expect([facts[3].plotlyImage, facts[3].plotlyLive]).toEqual([false, true]);
    // viz/'s single views (FIT_VIEW, autosize fit-x): the whole chart, legend included, is FIT_WIDTH wide.
    expect(Math.abs(facts[4].chart - FIT_VIEW.width)).toBeLessThanOrEqual(2);
    expect(facts[4].width).toBeLessThanOrEqual(facts[4].area + 1);
    await page.close();
  }, 180_000);

  for (const name of NOTEBOOKS) {
    test(`${name}: Run All; every output fits, no error, Plotly live, Vega drawn`, async () => {
      const page = await context!.newPage();
      const run = await runAll(page, base, token, `notebooks/${name}`, 540_000);
      // Plots render after their cell finished (plotly.js loads lazily): wait for every one.
      const plotly = page.locator(".jp-Notebook .jp-RenderedPlotly");
      // (The output node itself becomes the .js-plotly-plot; its SVGs are inside.)
      for (let i = 0; i < (await plotly.count()); i++) await plotly.nth(i).locator(".main-svg").first().waitFor({ state: "attached", timeout: 30_000 }).catch(() => undefined);
      const vega = page.locator(".jp-Notebook .jp-RenderedVegaCommon5");
      for (let i = 0; i < (await vega.count()); i++) await vega.nth(i).locator("canvas.marks, svg.marks").first().waitFor({ timeout: 30_000 }).catch(() => undefined);
      await page.waitForTimeout(500); // let responsive plots settle on their container width
      const facts = await measureOutputs(page);
      widths[name] = facts;
      const rich = facts.filter((f) => /Plotly|Vega|Image|HTML/.test(f.renderer));
      console.log(`${name}: ${run.executed}/${run.cells} cells in ${run.seconds.toFixed(1)} s; ` +
        rich.map((f) => `[${f.cell}] ${f.renderer.replace("jp-Rendered", "")} ${f.width}/${f.area}px (figure ${f.chart}px)`).join(", "));

      // The whole notebook in one picture: a viewport as tall as the notebook.
      const height = await page.evaluate(() => {
        // The notebook scrolls inside an inner panel: its content height is the largest scrollHeight in it.
        const nb = (window as any).jupyterapp.shell.currentWidget.content.node as HTMLElement;
        return Math.max(...[nb, ...Array.from(nb.querySelectorAll("*"))].map((e) => e.scrollHeight)) + 150;
      });
      await page.setViewportSize({ width: 1280, height: Math.min(20_000, height + 200) });
      await page.waitForTimeout(300);
      await page.screenshot({ path: join(RESULTS, `notebook-${name.replace(/\.ipynb$/, "")}.png`) });
      if (name === "10-moe-routing.ipynb") {
        // The README's picture: the first chart of the routing notebook.
        await page.locator(".jp-Notebook .jp-OutputArea-output.jp-RenderedVegaCommon5").first().screenshot({ path: join(RESULTS, "routing-view.png") });
      }
      await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.sessionContext.shutdown());
      await page.close();

      expect(run.executed, `${name}: Run All stopped early`).toBe(run.cells);
      expect(facts.filter((f) => f.error).map((f) => `cell ${f.cell}: ${f.text}`)).toEqual([]);
      expect(facts.filter((f) => f.width > f.area + 1).map((f) => `cell ${f.cell} ${f.renderer}: ${f.width}px in ${f.area}px`)).toEqual([]);
      const plots = facts.filter((f) => f.renderer === "jp-RenderedPlotly");
      expect(plots.filter((f) => !f.plotlyLive || f.plotlyImage).map((f) => `cell ${f.cell}`)).toEqual([]);
      const charts = facts.filter((f) => f.renderer === "jp-RenderedVegaCommon5");
      expect(charts.filter((f) => !f.vegaDrawn).map((f) => `cell ${f.cell}`)).toEqual([]);
    }, 600_000);
  }
});
