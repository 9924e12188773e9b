// Static rendering without a browser: Vega-Lite -> Vega (vega-lite's compile) -> SVG (vega's
// headless View) -> PNG (sharp, which draws SVG text with the system fonts through fontconfig).
// Plotly needs a browser to draw, so Plotly heatmap figures are redrawn statically as an
// equivalent Vega-Lite heatmap (plotlyStaticSpec); Sankey diagrams have no static rendering.
import sharp from "sharp";
import * as vega from "vega";
import { compile } from "vega-lite";

import type { RawImage } from "../sdk/image_utils";
import { PlotlyFigure, VEGA_LITE_SCHEMA, VegaLiteSpec, isPlotlyFigure, isVegaLiteSpec, labelExpr, maxOf, minOf } from "./common";

export interface CompiledVega {
  spec: vega.Spec;
  /** vega-lite's warnings (a spec the tests accept has none). */
  warnings: string[];
}

/**
 * Compiles a Vega-Lite spec to Vega, collecting warnings instead of printing them; errors throw.
 * `config` is merged under the spec's own config (the static renderer turns ARIA labels off).
 */
export function compileVegaLite(spec: VegaLiteSpec, config?: Record<string, unknown>): CompiledVega {
  const warnings: string[] = [];
  let level = 0;
  const logger = {
    level(l?: number) {
      if (l === undefined) return level;
      level = l;
      return logger;
    },
    warn(...args: readonly unknown[]) {
      warnings.push(args.map(String).join(" "));
      return logger;
    },
    info() {
      return logger;
    },
    debug() {
      return logger;
    },
    error(...args: readonly unknown[]) {
      throw new Error(`vega-lite: ${args.map(String).join(" ")}`);
    },
  };
  const out = compile(spec as never, { logger: logger as never, ...(config ? { config: config as never } : {}) });
  return { spec: out.spec, warnings };
}

export interface RenderOptions {
  /** Pixel scale of the output (default 1 for SVG, 2 for PNG). */
  scale?: number;
}

/** A headless Vega view of the spec, run once (for reading its data sets or scenegraph). */
export async function vegaView(spec: VegaLiteSpec | PlotlyFigure): Promise<vega.View> {
  const vl = isPlotlyFigure(spec) ? plotlyStaticSpec(spec) : spec;
  if (!isVegaLiteSpec(vl)) throw new Error("expected a Vega-Lite spec ($schema .../vega-lite/v5.json) or a Plotly figure");
  // No per-mark ARIA descriptions in static output: they would double the SVG's size.
  const { spec: vg } = compileVegaLite(vl, { aria: false });
  const view = new vega.View(vega.parse(vg), { renderer: "none" });
  await view.runAsync();
  return view;
}

/** SVG text of a Vega-Lite spec (or of a Plotly heatmap figure, redrawn by plotlyStaticSpec). */
export async function toSVG(spec: VegaLiteSpec | PlotlyFigure, options: RenderOptions = {}): Promise<string> {
  const view = await vegaView(spec);
  try {
    return await view.toSVG(options.scale ?? 1);
  } finally {
    view.finalize();
  }
}

/** PNG bytes of the spec: its SVG rasterized by sharp at `scale` (default 2) pixels per SVG unit. */
export async function toPNG(spec: VegaLiteSpec | PlotlyFigure, options: RenderOptions = {}): Promise<Buffer> {
  const svg = await toSVG(spec);
  return svgToPNG(svg, options.scale ?? 2);
}

export async function svgToPNG(svg: string, scale = 2): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 * scale }).png().toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Plotly heatmaps drawn by Vega

const PLOTLY_SCHEMES: Record<string, string> = {
  viridis: "viridis",
  blues: "blues",
  rdbu: "redblue",
  reds: "reds",
  greens: "greens",
  greys: "greys",
  magma: "magma",
  plasma: "plasma",
  inferno: "inferno",
  cividis: "cividis",
  ylorrd: "yelloworangered",
  ylgnbu: "yellowgreenblue",
};

function stripTags(s: unknown): string {
  return typeof s === "string" ? s.replace(/<br\s*\/?>/gi, " ").replace(/<[^>]+>/g, "") : "";
}

function titleOf(x: unknown): string {
  if (typeof x === "string") return stripTags(x);
  if (x && typeof x === "object") return stripTags((x as { text?: unknown }).text);
  return "";
}

function axisLabels(axis: Record<string, unknown> | undefined, values: unknown[]): string[] {
  const tickvals = axis?.tickvals as unknown[] | undefined;
  const ticktext = axis?.ticktext as unknown[] | undefined;
  return values.map((v) => {
    if (Array.isArray(tickvals) && Array.isArray(ticktext)) {
      const i = tickvals.indexOf(v);
      if (i >= 0) return String(ticktext[i]);
    }
    return String(v);
  });
}

function colorScaleFor(trace: Record<string, unknown>, zmin: number, zmax: number): Record<string, unknown> {
  const cs = trace.colorscale;
  if (Array.isArray(cs)) {
    const colors = (cs as [number, string][]).map((s) => s[1]);
    const discrete = colors.length % 2 === 0 && colors.every((c, i) => i % 2 === 1 || c === colors[i + 1]);
    if (discrete) return { type: "quantize", domain: [zmin, zmax], range: colors.filter((_, i) => i % 2 === 0) };
    return { domain: (cs as [number, string][]).map((s) => zmin + s[0] * (zmax - zmin)), range: colors };
  }
  const scheme = PLOTLY_SCHEMES[String(cs ?? "viridis").toLowerCase()] ?? "viridis";
  const s: Record<string, unknown> = { scheme, domain: [zmin, zmax] };
  if (typeof trace.zmid === "number") s.domainMid = trace.zmid;
  if (trace.reversescale) s.reverse = true;
  return s;
}

/**
 * A Vega-Lite heatmap drawing the visible heatmap traces of a Plotly figure (one panel each,
 * side by side) with the same z values, tick labels, colour range and title. Other trace types
 * (Sankey, scatter...) throw.
 */
export function plotlyStaticSpec(fig: PlotlyFigure): VegaLiteSpec {
  const traces = fig.data.filter((t) => t.visible !== false);
  if (traces.length === 0) throw new Error("the Plotly figure has no visible trace");
  const bad = traces.find((t) => t.type !== "heatmap");
  if (bad) throw new Error(`no static rendering for Plotly "${String(bad.type)}" traces (only heatmaps); use the interactive figure`);
  const layout = fig.layout ?? {};
  const colorTitle = traces.map((t) => titleOf((t.colorbar as Record<string, unknown> | undefined)?.title)).find((x) => x) ?? "";
  const built = traces.map((t, i) => {
    const z = t.z as (number | null)[][];
    const xs = (t.x as unknown[] | undefined) ?? z[0].map((_, j) => j);
    const ys = (t.y as unknown[] | undefined) ?? z.map((_, j) => j);
    const xref = String(t.xaxis ?? "x").replace(/^x/, "xaxis");
    const yref = String(t.yaxis ?? "y").replace(/^y/, "yaxis");
    const xaxis = layout[xref] as Record<string, unknown> | undefined;
    const yaxis = layout[yref] as Record<string, unknown> | undefined;
    const finite = z.flat().filter((v): v is number => typeof v === "number" && Number.isFinite(v));
    const zmin = typeof t.zmin === "number" ? t.zmin : minOf(finite);
    const zmax = typeof t.zmax === "number" ? t.zmax : maxOf(finite);
    const color = { field: "z", type: "quantitative", title: colorTitle || "value", scale: colorScaleFor(t, zmin, zmax) };
    const panelTitle = traces.length > 1 ? (typeof t.name === "string" && t.name ? t.name : `panel ${i + 1}`) : "";
    const range = `${zmin}/${zmax}/${JSON.stringify(t.colorscale ?? null)}`;
    if (typeof t.dx === "number" && typeof t.dy === "number" && t.x === undefined && t.y === undefined) {
      return { panel: { title: panelTitle, ...continuousHeatmap(t, z, layout, xaxis, yaxis, color) }, range };
    }
    const xLabels = axisLabels(xaxis, xs);
    const yLabels = axisLabels(yaxis, ys);
    const values: Record<string, unknown>[] = [];
    z.forEach((row, yi) => row.forEach((v, xi) => {
      if (typeof v === "number" && Number.isFinite(v)) values.push({ xi, yi, z: v });
    }));
    const reversed = isReversed(yaxis);
    const panel: Record<string, unknown> = {
      title: panelTitle,
      data: { values },
      mark: { type: "rect" },
      width: { step: Math.max(6, Math.min(24, Math.floor(720 / xs.length))) },
      height: { step: Math.max(6, Math.min(20, Math.floor(720 / ys.length))) },
      encoding: {
        x: {
          field: "xi", type: "ordinal", title: titleOf(xaxis?.title) || null,
          scale: { domain: xs.map((_, j) => j) },
          axis: { labelExpr: labelExpr(xLabels), labelOverlap: true },
        },
        y: {
          field: "yi", type: "ordinal", title: titleOf(yaxis?.title) || null,
          scale: { domain: reversed ? ys.map((_, j) => j) : ys.map((_, j) => ys.length - 1 - j) },
          axis: { labelExpr: labelExpr(yLabels), labelOverlap: true },
        },
        color,
      },
    };
    return { panel, range };
  });
  const panels = built.map((b) => b.panel);
  // Panels drawn on one colour range (same zmin, zmax, colorscale) share one legend.
  const shared = built.every((b) => b.range === built[0].range);
  const title = titleOf(layout.title);
  const base = { $schema: VEGA_LITE_SCHEMA, ...(title ? { title } : {}), config: { view: { stroke: null } } };
  if (panels.length === 1) {
    const { title: _unused, ...only } = panels[0];
    return { ...base, ...only };
  }
  return { ...base, hconcat: panels, resolve: { scale: { color: shared ? "shared" : "independent" } } };
}

/** A Plotly axis drawn top-down: autorange "reversed", or a range from high to low. */
function isReversed(axis: Record<string, unknown> | undefined): boolean {
  const range = axis?.range as unknown[] | undefined;
  return axis?.autorange === "reversed" || (Array.isArray(range) && Number(range[0]) > Number(range[1]));
}

/**
 * A heatmap placed in data coordinates (x0/dx, y0/dy), as imageAttention draws over a picture: cells
 * as rectangles on quantitative axes with the Plotly axes' ranges, and the layout's images on those
 * axes drawn underneath.
 */
function continuousHeatmap(
  trace: Record<string, unknown>,
  z: (number | null)[][],
  layout: Record<string, unknown>,
  xaxis: Record<string, unknown> | undefined,
  yaxis: Record<string, unknown> | undefined,
  color: Record<string, unknown>,
): Record<string, unknown> {
  const dx = trace.dx as number;
  const dy = trace.dy as number;
  const x0 = typeof trace.x0 === "number" ? trace.x0 : 0;
  const y0 = typeof trace.y0 === "number" ? trace.y0 : 0;
  const cells: Record<string, unknown>[] = [];
  z.forEach((row, yi) => row.forEach((v, xi) => {
    if (typeof v !== "number" || !Number.isFinite(v)) return;
    const x = x0 + (xi - 0.5) * dx;
    const y = y0 + (yi - 0.5) * dy;
    cells.push({ x, x2: x + dx, y, y2: y + dy, z: v });
  }));
  const reversed = isReversed(yaxis);
  const domainOf = (axis: Record<string, unknown> | undefined, lo: number, hi: number, flip: boolean) => {
    const range = axis?.range as number[] | undefined;
    if (Array.isArray(range) && range.length === 2) return range.map(Number);
    return flip ? [hi, lo] : [lo, hi];
  };
  const xDomain = domainOf(xaxis, x0 - dx / 2, x0 + (z[0].length - 0.5) * dx, false);
  const yDomain = domainOf(yaxis, y0 - dy / 2, y0 + (z.length - 0.5) * dy, reversed);
  const axisOf = (axis: Record<string, unknown> | undefined) => (axis?.visible === false ? null : {});
  const x = { field: "x", type: "quantitative", scale: { domain: xDomain, nice: false, zero: false }, axis: axisOf(xaxis), title: titleOf(xaxis?.title) || null };
  const y = { field: "y", type: "quantitative", scale: { domain: yDomain, nice: false, zero: false }, axis: axisOf(yaxis), title: titleOf(yaxis?.title) || null };
  const xref = String(trace.xaxis ?? "x");
  const yref = String(trace.yaxis ?? "y");
  const pictures = ((layout.images as Record<string, unknown>[] | undefined) ?? [])
    // (Plotly's default reference is "paper", the whole figure: such images are not drawn here.)
    .filter((im) => (im.xref ?? "paper") === xref && (im.yref ?? "paper") === yref && typeof im.source === "string")
    .map((im) => {
      const px = Number(im.x ?? 0);
      const py = Number(im.y ?? 0);
      // Plotly anchors an image at its top-left corner: downwards is +y on a top-down axis, -y otherwise.
      return {
        x: px, x2: px + Number(im.sizex ?? 0), y: py, y2: reversed ? py + Number(im.sizey ?? 0) : py - Number(im.sizey ?? 0),
        url: im.source, above: im.layer !== "below", // Plotly's default is "above"
      };
    });
  // One data unit as long on both axes (as imageAttention's scaleanchor asks), within 120..720 pixels.
  const aspect = Math.abs(yDomain[1] - yDomain[0]) / Math.abs(xDomain[1] - xDomain[0]) || 1;
  const clamp = (v: number) => Math.round(Math.min(720, Math.max(120, v)));
  const width = clamp(aspect > 2 ? 720 / aspect : aspect < 1 / 3 ? 120 / aspect : 360);
  const height = clamp(width * aspect);
  const cellLayer = {
    data: { values: cells },
    mark: { type: "rect", opacity: typeof trace.opacity === "number" ? trace.opacity : 1 },
    encoding: { x, x2: { field: "x2" }, y, y2: { field: "y2" }, color },
  };
  const pictureLayer = (values: Record<string, unknown>[]) => ({
    data: { values: values.map(({ above: _above, ...p }) => p) },
    mark: { type: "image", aspect: false },
    encoding: { x, x2: { field: "x2" }, y, y2: { field: "y2" }, url: { field: "url", type: "nominal" } },
  });
  const below = pictures.filter((p) => !p.above);
  const above = pictures.filter((p) => p.above);
  return {
    width,
    height,
    layer: [...(below.length ? [pictureLayer(below)] : []), cellLayer, ...(above.length ? [pictureLayer(above)] : [])],
  };
}

/** An RGB image (e.g. from load_image) as PNG bytes, at most `maxSize` pixels on its long side. */
export async function imagePNG(image: RawImage, maxSize: number): Promise<Buffer> {
  if (!Number.isInteger(maxSize) || maxSize < 1) throw new Error(`imagePNG: maxSize must be a positive whole number of pixels, got ${maxSize}`);
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize({ width: maxSize, height: maxSize, fit: "inside", withoutEnlargement: true })
    .png()
    .toBuffer();
}
