// Attention probabilities of a trace as heatmaps. Llama 4 interleaves chunked-attention layers
// (RoPE, each query sees only keys of its own attention_chunk_size chunk) with full-attention NoPE
// layers; the chunked ones get their chunk boundaries drawn as rules and the region the chunk mask
// hides in grey, and every title names the layer type.
import type { AttentionMap, GenerationTraceData } from "../sdk/trace";
import { FIT_WIDTH, PlotlyFigure, VEGA_LITE_SCHEMA, VegaLiteSpec, escapeHtml, exprArray, labelExpr, maxOf, tokenLabels, traceTitle } from "./common";

export interface LayerKind {
  layer: number;
  type: "chunked_attention" | "full_attention";
  chunked: boolean;
  /** Chunk size for chunked layers, null for full attention. */
  chunk: number | null;
  /** "chunked attention, RoPE, chunk 8192" or "full attention, NoPE". */
  label: string;
}

export function layerKind(trace: GenerationTraceData, layer: number): LayerKind {
  const type = trace.model.layer_types[layer];
  if (type === undefined) throw new Error(`layer ${layer} is not a layer of the model (0..${trace.model.layer_types.length - 1})`);
  const chunk = trace.model.attention_chunk_size;
  const chunked = type === "chunked_attention" && chunk !== null;
  return {
    layer,
    type: chunked ? "chunked_attention" : "full_attention",
    chunked,
    chunk: chunked ? chunk : null,
    label: chunked ? `chunked attention, RoPE, chunk ${chunk}` : "full attention, NoPE",
  };
}

/** Positions (0 < b < n) where a new attention chunk starts. */
export function chunkBoundaries(n: number, chunk: number | null): number[] {
  if (!chunk) return [];
  const out: number[] = [];
  for (let b = chunk; b < n; b += chunk) out.push(b);
  return out;
}

/**
 * The causal keys a chunked layer hides, as one rectangle per chunk after the first: queries
 * [q0, q1) cannot see keys [0, k1) = everything before their chunk.
 */
export function maskedBlocks(n: number, chunk: number | null): { k0: number; k1: number; q0: number; q1: number }[] {
  return chunkBoundaries(n, chunk).map((b) => ({ k0: 0, k1: b, q0: b, q1: Math.min(b + chunk!, n) }));
}

export function attentionMapOf(trace: GenerationTraceData, layer: number, head: number): AttentionMap {
  const map = trace.attention.find((a) => a.layer === layer && a.head === head);
  if (!map) {
    const have = trace.attention.map((a) => `L${a.layer}/h${a.head}`).join(", ") || "none";
    throw new Error(`no attention recorded for layer ${layer} head ${head} (recorded: ${have})`);
  }
  return map;
}

/** One visible (query, key) pair: its probability. Token texts and cell edges are derived in the spec. */
export interface AttentionCell {
  head: number;
  q: number;
  k: number;
  p: number;
}

export interface AttentionOptions {
  /** Show only the first N positions. */
  maxTokens?: number;
  /** Colour scale of the probabilities (default "sqrt", which shows small weights). */
  colorScale?: "linear" | "sqrt" | "log";
}

/** The keys each query can see: 0..q on full-attention layers, its chunk's start..q on chunked ones. */
export function attentionCells(trace: GenerationTraceData, map: AttentionMap, maxTokens = Infinity): AttentionCell[] {
  const kind = layerKind(trace, map.layer);
  const n = Math.min(map.probs.length, maxTokens);
  const cells: AttentionCell[] = [];
  for (let q = 0; q < n; q++) {
    const row = map.probs[q];
    const start = kind.chunked ? Math.floor(q / kind.chunk!) * kind.chunk! : 0;
    for (let k = start; k <= q && k < row.length; k++) cells.push({ head: map.head, q, k, p: row[k] });
  }
  return cells;
}

function colorScaleOf(options: AttentionOptions): Record<string, unknown> {
  const type = options.colorScale ?? "sqrt";
  if (type === "log") return { type: "symlog", constant: 0.01, scheme: "viridis", domain: [0, 1] };
  return { type, scheme: "viridis", domain: [0, 1] };
}

/** Quantitative position axes (cell k spans [k, k + 1]) labelled with the tokens at the cell centres. */
function positionAxes(labels: string[], n: number, fields = { x: "k", x2: "k1", y: "q", y2: "q1" }) {
  const ticks = Array.from({ length: n }, (_, i) => i + 0.5);
  const axis = (title: string, angle?: number) => ({
    title,
    values: ticks,
    labelExpr: labelExpr(labels),
    grid: false,
    ...(angle !== undefined ? { labelAngle: angle } : {}),
  });
  return {
    x: { field: fields.x, type: "quantitative", scale: { domain: [0, n], nice: false, zero: true }, axis: axis("key", -60) },
    x2: { field: fields.x2 },
    y: { field: fields.y, type: "quantitative", scale: { domain: [0, n], nice: false, zero: true, reverse: true }, axis: axis("query") },
    y2: { field: fields.y2 },
  };
}

/** Cell edges and token texts computed by Vega from the lean {q, k, p} rows. */
function cellTransforms(labels: string[]): Record<string, unknown>[] {
  const arr = exprArray(labels);
  return [
    { calculate: "datum.k + 1", as: "k1" },
    { calculate: "datum.q + 1", as: "q1" },
    { calculate: `${arr}[datum.q]`, as: "query" },
    { calculate: `${arr}[datum.k]`, as: "key" },
  ];
}

const CELL_TOOLTIP = [
  { field: "query", type: "nominal", title: "query token" },
  { field: "q", type: "quantitative", title: "query position" },
  { field: "key", type: "nominal", title: "key token" },
  { field: "k", type: "quantitative", title: "key position" },
  { field: "p", type: "quantitative", title: "probability", format: ".4f" },
];

const MASK_COLOR = "#e4e4e4";
const RULE = { type: "rule", color: "#d62728", strokeDash: [4, 3], strokeWidth: 1.5 };

/**
 * Vega-Lite heatmap of one layer and head: query rows x key columns labelled with the tokens.
 * A chunked-attention layer adds a grey layer over the keys its chunk mask hides and a layer named
 * "chunk_boundaries" (one rule per boundary position, plus its horizontal twin); a full-attention
 * (NoPE) layer has neither.
 */
export function attentionHeatmap(trace: GenerationTraceData, options: AttentionOptions & { layer: number; head: number }): VegaLiteSpec {
  const map = attentionMapOf(trace, options.layer, options.head);
  const kind = layerKind(trace, options.layer);
  const n = Math.min(map.probs.length, options.maxTokens ?? Infinity);
  const cells = attentionCells(trace, map, n).map(({ q, k, p }) => ({ q, k, p }));
  const labels = tokenLabels(trace.tokens, n);
  const enc = positionAxes(labels, n);
  // Square, at least 320 px, and with the token labels and the legend still within FIT_WIDTH.
  const size = Math.min(FIT_WIDTH - 200, Math.max(320, 18 * n));
  const layers: Record<string, unknown>[] = [
    {
      data: { values: cells },
      transform: cellTransforms(labels),
      mark: { type: "rect" },
      encoding: { ...enc, color: { field: "p", type: "quantitative", title: "probability", scale: colorScaleOf(options) }, tooltip: CELL_TOOLTIP },
    },
  ];
  if (kind.chunked) {
    const blocks = maskedBlocks(n, kind.chunk);
    if (blocks.length) {
      layers.push({
        name: "masked",
        data: { values: blocks.map((b) => ({ ...b, note: `queries ${b.q0}..${b.q1 - 1} cannot see keys before ${b.k1}` })) },
        mark: { type: "rect", color: MASK_COLOR },
        encoding: { ...positionAxes(labels, n, { x: "k0", x2: "k1", y: "q0", y2: "q1" }), tooltip: [{ field: "note", type: "nominal", title: "chunk mask" }] },
      });
    }
    const bounds = chunkBoundaries(n, kind.chunk).map((pos) => ({ pos, label: `chunk starts at ${pos}` }));
    layers.push({
      name: "chunk_boundaries",
      data: { values: bounds },
      mark: RULE,
      encoding: { x: { field: "pos", type: "quantitative" }, tooltip: [{ field: "label", type: "nominal" }] },
    });
    layers.push({
      data: { values: bounds },
      mark: RULE,
      encoding: { y: { field: "pos", type: "quantitative" } },
    });
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: traceTitle(trace, `Attention, layer ${options.layer} (${kind.label}), head ${options.head}`),
      // Two short lines: a title is not wrapped and would be wider than the chart.
      subtitle: kind.chunked
        ? [`each query attends to keys of its own ${kind.chunk}-token chunk;`, "dashed lines: chunk boundaries, grey: masked"]
        : "each query attends to every earlier key (no position encoding)",
    },
    width: size,
    height: size,
    layer: layers,
    config: { view: { stroke: null } },
  };
}

/** Vega-Lite grid of the recorded heads of one layer (facet by head), chunk structure as in attentionHeatmap. */
export function attentionHeadGrid(
  trace: GenerationTraceData,
  options: AttentionOptions & { layer: number; heads?: number[]; columns?: number },
): VegaLiteSpec {
  const kind = layerKind(trace, options.layer);
  const maps = trace.attention
    .filter((a) => a.layer === options.layer && (!options.heads || options.heads.includes(a.head)))
    .sort((a, b) => a.head - b.head);
  if (maps.length === 0) throw new Error(`no attention recorded for layer ${options.layer}${options.heads ? ` heads ${options.heads.join(", ")}` : ""}`);
  const n = Math.min(maxOf(maps.map((m) => m.probs.length)), options.maxTokens ?? Infinity);
  const labels = tokenLabels(trace.tokens, n);
  // A facet has one data set: "cell" rows, and per head its "mask" blocks and "boundary" positions.
  const values: Record<string, unknown>[] = [];
  for (const m of maps) {
    for (const c of attentionCells(trace, m, n)) values.push({ kind: "cell", ...c });
    for (const b of maskedBlocks(n, kind.chunk)) values.push({ kind: "mask", head: m.head, ...b });
    for (const pos of chunkBoundaries(n, kind.chunk)) values.push({ kind: "boundary", head: m.head, pos });
  }
  // The grid wraps after `columns` heads, each panel sized so a row (token labels, legend) fits FIT_WIDTH.
  const columns = options.columns ?? Math.min(4, maps.length);
  const size = Math.max(100, Math.min(260, 10 * n, Math.floor((FIT_WIDTH - 200) / columns) - 10));
  const rule = { ...RULE, strokeWidth: 1 };
  const only = (kindName: string) => ({ filter: `datum.kind === '${kindName}'` });
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: traceTitle(trace, `Attention heads of layer ${options.layer} (${kind.label})`),
      subtitle: kind.chunked ? "dashed lines: chunk boundaries; grey: masked by the chunk" : "full causal attention, no position encoding",
    },
    data: { values },
    facet: { field: "head", type: "ordinal", title: "head" },
    columns,
    spec: {
      width: size,
      height: size,
      layer: [
        {
          transform: [only("cell"), ...cellTransforms(labels)],
          mark: { type: "rect" },
          encoding: {
            ...positionAxes(labels, n),
            color: { field: "p", type: "quantitative", title: "probability", scale: colorScaleOf(options) },
            tooltip: CELL_TOOLTIP,
          },
        },
        {
          transform: [only("mask")],
          mark: { type: "rect", color: MASK_COLOR },
          encoding: positionAxes(labels, n, { x: "k0", x2: "k1", y: "q0", y2: "q1" }),
        },
        { transform: [only("boundary")], mark: rule, encoding: { x: { field: "pos", type: "quantitative" } } },
        { transform: [only("boundary")], mark: rule, encoding: { y: { field: "pos", type: "quantitative" } } },
      ],
    },
    config: { view: { stroke: null } },
  };
}

/** Plotly heatmap of one layer and head (token labels, probabilities on hover, chunk boundaries as shapes). */
export function attentionHeatmapPlotly(trace: GenerationTraceData, options: AttentionOptions & { layer: number; head: number }): PlotlyFigure {
  const map = attentionMapOf(trace, options.layer, options.head);
  const kind = layerKind(trace, options.layer);
  const n = Math.min(map.probs.length, options.maxTokens ?? Infinity);
  const labels = tokenLabels(trace.tokens, n);
  const z: (number | null)[][] = [];
  for (let q = 0; q < n; q++) {
    const start = kind.chunked ? Math.floor(q / kind.chunk!) * kind.chunk! : 0;
    z.push(Array.from({ length: n }, (_, k) => (k <= q && k >= start ? map.probs[q][k] ?? null : null)));
  }
  const shapes = [
    ...maskedBlocks(n, kind.chunk).map((b) => ({
      type: "rect", x0: b.k0 - 0.5, x1: b.k1 - 0.5, y0: b.q0 - 0.5, y1: b.q1 - 0.5, fillcolor: MASK_COLOR, line: { width: 0 }, layer: "below",
    })),
    ...chunkBoundaries(n, kind.chunk).flatMap((b) => [
      { type: "line", x0: b - 0.5, x1: b - 0.5, y0: -0.5, y1: n - 0.5, line: { color: "#d62728", dash: "dash", width: 1.5 } },
      { type: "line", x0: -0.5, x1: n - 0.5, y0: b - 0.5, y1: b - 0.5, line: { color: "#d62728", dash: "dash", width: 1.5 } },
    ]),
  ];
  // Categorical axes named "position: token" keep repeated tokens apart and put the token in the
  // hover (%{x}, %{y}) without n x n hover strings; the ticks show the bare token.
  const names = labels.map((l, i) => `${i}: ${escapeHtml(l)}`);
  return {
    data: [
      {
        type: "heatmap",
        x: names,
        y: names,
        z,
        hovertemplate: "query %{y} → key %{x}: %{z:.4f}<extra></extra>",
        colorscale: "Viridis",
        zmin: 0,
        zmax: 1,
        hoverongaps: false,
      },
    ],
    layout: {
      title: { text: traceTitle(trace, `Attention, layer ${options.layer} (${kind.label}), head ${options.head}`) },
      xaxis: { title: { text: "key" }, type: "category", tickmode: "array", tickvals: names, ticktext: labels.map(escapeHtml), tickangle: -60 },
      yaxis: { title: { text: "query" }, type: "category", tickmode: "array", tickvals: names, ticktext: labels.map(escapeHtml), autorange: "reversed" },
      shapes,
      // No width: the figure follows its output area (responsive); the height suits the token count.
      height: Math.min(800, Math.max(360, 20 * n + 160)),
    },
  };
}
