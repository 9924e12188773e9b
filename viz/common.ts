// Shared pieces of the viz/ spec builders: the spec types, token labels, colours, small maths.
import type { GenerationTraceData, LayerRouting, TraceToken } from "../sdk/trace";

export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";

/**
 * The width charts are laid out for: JupyterLab's output area is about 840 px wide in a 1280-px
 * window, GitHub's notebook column about as wide, so 720 px leaves room for labels and legend.
 */
export const FIT_WIDTH = 720;

/**
 * Vega-Lite sizing of a single view that spans the notebook column: FIT_WIDTH in all, the padding,
 * axes and legend included (autosize fit-x), so nothing sticks out and few bands still get a wide
 * chart. Not width "container": in JupyterLab the Vega renderer's element takes its size from the
 * chart (in the browser test a container-wide chart stalled the page, its memory growing).
 * Give such a view a numeric height (not a step): vega-lite cannot fit a view whose height is a step.
 */
export const FIT_VIEW = { width: FIT_WIDTH, autosize: { type: "fit-x", contains: "padding" } } as const;

/**
 * A band step (px) that lays `count` bands in each of `panels` side-by-side facets within
 * FIT_WIDTH (`overhead` px per panel for its labels and spacing), between 2 px and `max`: small
 * heatmaps grow to a readable size, large ones (Maverick's 128 experts) shrink to fit.
 */
export function fitStep(count: number, panels = 1, max = 40, overhead = 60): number {
  return Math.max(2, Math.min(max, Math.floor((FIT_WIDTH - 80 - overhead * panels) / (panels * Math.max(count, 1)))));
}

/** A Vega-Lite v5 spec as plain JSON (validated by vega-lite's compile, not by TypeScript). */
export type VegaLiteSpec = { $schema: string } & Record<string, unknown>;

/** A Plotly figure as plain JSON: what `application/vnd.plotly.v1+json` carries. */
export interface PlotlyFigure {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

export function isPlotlyFigure(spec: unknown): spec is PlotlyFigure {
  return !!spec && typeof spec === "object" && Array.isArray((spec as PlotlyFigure).data) && !("$schema" in (spec as object));
}

export function isVegaLiteSpec(spec: unknown): spec is VegaLiteSpec {
  return !!spec && typeof spec === "object" && typeof (spec as VegaLiteSpec).$schema === "string" &&
    (spec as VegaLiteSpec).$schema.includes("vega-lite");
}

/** A token's text made visible on an axis: newlines, tabs and blank tokens get a glyph. */
export function displayToken(text: string): string {
  const shown = text.replace(/\r\n|\n/g, "↵").replace(/\t/g, "⇥");
  if (shown.length === 0) return "∅";
  if (shown.trim().length === 0) return "␣".repeat(Math.min(shown.length, 4));
  return shown;
}

/** Axis labels for the traced positions, one per token (duplicates allowed: axes use the position). */
export function tokenLabels(tokens: TraceToken[], count = tokens.length): string[] {
  return Array.from({ length: count }, (_, i) => (i < tokens.length ? displayToken(tokens[i].text) : `#${i}`));
}

/**
 * A Vega expression that maps an axis value (a position) to its token label. Axes keyed by the
 * position keep repeated tokens apart while still showing the token text.
 */
export function labelExpr(labels: string[]): string {
  return `${exprArray(labels)}[floor(datum.value)] || ''`;
}

/**
 * A string array as a Vega expression literal. Vega's expression parser rejects some characters
 * JSON leaves raw (U+2028, control characters), so everything outside printable ASCII is written
 * as \uXXXX escapes (UTF-16 code units, so emoji survive as surrogate pairs).
 */
export function exprArray(items: string[]): string {
  const lit = (s: string) => {
    let out = '"';
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x22 || c === 0x5c) out += "\\" + s[i];
      else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
      else out += s[i];
    }
    return out + '"';
  };
  return `[${items.map(lit).join(",")}]`;
}

/** Largest / smallest value of a long array (spreading into Math.max overflows the stack past ~100k values). */
export function maxOf(values: Iterable<number>, start = -Infinity): number {
  let m = start;
  for (const v of values) if (v > m) m = v;
  return m;
}

export function minOf(values: Iterable<number>, start = Infinity): number {
  let m = start;
  for (const v of values) if (v < m) m = v;
  return m;
}

export function softmax(row: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  const out = new Array<number>(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) {
    out[i] = Math.exp(row[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < row.length; i++) out[i] /= sum;
  return out;
}

/** Shannon entropy in nats of a probability vector (0 log 0 = 0). */
export function entropy(p: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) h -= p[i] * Math.log(p[i]);
  return h;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Routing entries ordered by layer, optionally restricted to some layers. */
export function routingLayers(trace: GenerationTraceData, layers?: number[]): LayerRouting[] {
  const all = [...trace.routing].sort((a, b) => a.layer - b.layer);
  if (!layers) return all;
  const missing = layers.filter((l) => !all.some((r) => r.layer === l));
  if (missing.length) {
    throw new Error(`no routing recorded for layer(s) ${missing.join(", ")}; traced MoE layers: ${all.map((r) => r.layer).join(", ")}`);
  }
  return all.filter((r) => layers.includes(r.layer));
}

export function routingAt(trace: GenerationTraceData, layer: number): LayerRouting {
  return routingLayers(trace, [layer])[0];
}

export function numExperts(trace: GenerationTraceData): number {
  return trace.model.num_local_experts;
}

/** 20 distinguishable colours (Vega's category20), used by both the Vega-Lite and the HTML outputs. */
export const CATEGORY20 = [
  "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
  "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
];

/**
 * A colour per expert: up to 10 experts the ten saturated category20 colours, up to 20 those then
 * their light partners (so experts 0..9 never share a hue family by pairs), beyond that spread hues
 * (Maverick's 128 experts cannot all be told apart; neighbours in index differ in hue).
 */
export function expertColors(numExperts: number): string[] {
  if (numExperts <= CATEGORY20.length) {
    const ordered = [...CATEGORY20.filter((_, i) => i % 2 === 0), ...CATEGORY20.filter((_, i) => i % 2 === 1)];
    return ordered.slice(0, numExperts);
  }
  return Array.from({ length: numExperts }, (_, e) => {
    const hue = Math.round((e * 137.508) % 360);
    const light = 45 + (e % 3) * 12;
    return hslToHex(hue, 65, light);
  });
}

function hslToHex(h: number, s: number, l: number): string {
  const sat = s / 100;
  const lig = l / 100;
  const k = (n: number) => (n + h / 30) % 12;
  const a = sat * Math.min(lig, 1 - lig);
  const f = (n: number) => lig - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  const hex = (x: number) => Math.round(x * 255).toString(16).padStart(2, "0");
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`;
}

/** Black or white, whichever reads better on a background colour "#rrggbb". */
export function textColorOn(background: string): string {
  const n = parseInt(background.slice(1), 16);
  const r = (n >> 16) & 255;
  const g = (n >> 8) & 255;
  const b = n & 255;
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000000" : "#ffffff";
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** A byte count in the decimal unit that keeps the largest value readable (B, kB, MB, GB). */
export function byteUnit(maxBytes: number): { unit: string; divisor: number } {
  if (maxBytes >= 1e9) return { unit: "GB", divisor: 1e9 };
  if (maxBytes >= 1e6) return { unit: "MB", divisor: 1e6 };
  if (maxBytes >= 1e3) return { unit: "kB", divisor: 1e3 };
  return { unit: "B", divisor: 1 };
}

/** A number for hover text and tooltips (data values themselves are never rounded). */
export function fmt(x: number, digits = 3): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function traceTitle(trace: GenerationTraceData, what: string): string {
  return trace.model.name ? `${what} — ${trace.model.name}` : what;
}
