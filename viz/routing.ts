// Expert routing of a trace as charts: load per layer and expert, the chosen expert per token and
// layer, the prompt coloured by expert, routing entropy, transitions between consecutive MoE
// layers, and two traces compared. Each chart has a `...Data` function that returns its numbers.
import type { GenerationTraceData, LayerRouting } from "../sdk/trace";
import {
  FIT_VIEW,
  PlotlyFigure,
  VEGA_LITE_SCHEMA,
  VegaLiteSpec,
  displayToken,
  entropy,
  escapeHtml,
  fitStep,
  expertColors,
  fmt,
  labelExpr,
  maxOf,
  minOf,
  routingAt,
  routingLayers,
  softmax,
  textColorOn,
  tokenLabels,
  traceTitle,
} from "./common";

export type Phase = "all" | "prompt" | "generated";

// ---------------------------------------------------------------------------------------------
// 1. Layer x expert load

export interface LoadOptions {
  /** Colour by the number of tokens (default) or by the fraction of the phase's tokens. */
  value?: "count" | "fraction";
  /** Separate prompt tokens from generated ones (one panel each). */
  split?: boolean;
  /** MoE layers to show (default: every traced one). */
  layers?: number[];
  /** Count only the r-th choice (0 = top-1); default: every one of the k chosen experts. */
  rank?: number;
}

export interface LoadRow {
  layer: number;
  expert: number;
  phase: Phase;
  /** Tokens of this phase routed to the expert. */
  count: number;
  /** Tokens in the phase. */
  tokens: number;
  /** count / tokens (sums to k over the experts of a layer when every choice counts). */
  fraction: number;
  /** Sum of the routing weights (sigmoid scores) the expert received. */
  score_sum: number;
}

/** Every expert labelled up to 32 experts, every 8th beyond (Maverick: 0, 8, ..., 120). */
function expertAxis(E: number): Record<string, unknown> {
  return E > 32 ? { values: [...Array(Math.ceil(E / 8)).keys()].map((i) => 8 * i), labelAngle: 0 } : { labelAngle: 0 };
}

function phaseOf(trace: GenerationTraceData, pos: number): Exclude<Phase, "all"> {
  return (trace.tokens[pos]?.is_prompt ?? true) ? "prompt" : "generated";
}

function positions(r: LayerRouting): number {
  return r.experts.length;
}

/** Tokens routed to each expert of each MoE layer (every expert listed, zeros included). */
export function routingLoadData(trace: GenerationTraceData, options: LoadOptions = {}): LoadRow[] {
  const E = trace.model.num_local_experts;
  const rows: LoadRow[] = [];
  const phases: Phase[] = options.split ? ["prompt", "generated"] : ["all"];
  for (const r of routingLayers(trace, options.layers)) {
    for (const phase of phases) {
      const counts = new Array<number>(E).fill(0);
      const scores = new Array<number>(E).fill(0);
      let tokens = 0;
      for (let t = 0; t < positions(r); t++) {
        if (phase !== "all" && phaseOf(trace, t) !== phase) continue;
        tokens++;
        r.experts[t].forEach((e, k) => {
          if (options.rank !== undefined && k !== options.rank) return;
          counts[e]++;
          scores[e] += r.scores[t]?.[k] ?? 0;
        });
      }
      if (tokens === 0 && phase !== "all") continue;
      for (let e = 0; e < E; e++) {
        rows.push({ layer: r.layer, expert: e, phase, count: counts[e], tokens, fraction: tokens ? counts[e] / tokens : 0, score_sum: scores[e] });
      }
    }
  }
  return rows;
}

const LOAD_TOOLTIP = [
  { field: "layer", type: "ordinal", title: "layer" },
  { field: "expert", type: "ordinal", title: "expert" },
  { field: "count", type: "quantitative", title: "tokens routed" },
  { field: "fraction", type: "quantitative", title: "fraction of tokens", format: ".3f" },
  { field: "score_sum", type: "quantitative", title: "sum of weights", format: ".3f" },
];

/** Vega-Lite heatmap: MoE layer (rows) x expert (columns), coloured by tokens routed. */
export function routingHeatmap(trace: GenerationTraceData, options: LoadOptions = {}): VegaLiteSpec {
  const value = options.value ?? "count";
  const rows = routingLoadData(trace, options);
  const E = trace.model.num_local_experts;
  const encoding: Record<string, unknown> = {
    x: { field: "expert", type: "ordinal", title: "expert", scale: { domain: [...Array(E).keys()] }, axis: expertAxis(E) },
    y: { field: "layer", type: "ordinal", title: "MoE layer" },
    color: {
      field: value,
      type: "quantitative",
      title: value === "count" ? "tokens" : "fraction of tokens",
      scale: { scheme: "viridis", zero: true },
    },
    tooltip: options.split ? [{ field: "phase", type: "nominal" }, ...LOAD_TOOLTIP] : LOAD_TOOLTIP,
  };
  if (options.split) encoding.column = { field: "phase", type: "nominal", title: null, sort: ["prompt", "generated"] };
  const rankNote = options.rank === undefined ? `top-${trace.model.num_experts_per_tok}` : `choice ${options.rank + 1}`;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: traceTitle(trace, `Expert load per MoE layer (${rankNote})`),
    data: { values: rows },
    mark: { type: "rect" },
    ...(options.split ? { width: { step: fitStep(E, 2) }, height: { step: 16 } } : { ...FIT_VIEW, height: 16 * new Set(rows.map((r) => r.layer)).size }),
    encoding,
    config: { view: { stroke: null }, axis: { grid: false } },
  };
}

/** Plotly heatmap of the same numbers, with the counts, fractions and weights on hover. */
export function routingHeatmapPlotly(trace: GenerationTraceData, options: LoadOptions = {}): PlotlyFigure {
  const value = options.value ?? "count";
  const E = trace.model.num_local_experts;
  const rows = routingLoadData(trace, options);
  const phases = [...new Set(rows.map((r) => r.phase))];
  const layers = [...new Set(rows.map((r) => r.layer))];
  const byKey = new Map(rows.map((r) => [`${r.phase}/${r.layer}/${r.expert}`, r]));
  const at = (phase: Phase, layer: number, e: number) => byKey.get(`${phase}/${layer}/${e}`)!;
  const data = phases.map((phase, i) => {
    const z = layers.map((layer) => Array.from({ length: E }, (_, e) => at(phase, layer, e)[value]));
    const text = layers.map((layer) => Array.from({ length: E }, (_, e) => {
      const row = at(phase, layer, e);
      return `layer ${layer} · expert ${e}${phase === "all" ? "" : ` · ${phase}`}<br>${row.count} of ${row.tokens} tokens (${fmt(row.fraction)})` +
        `<br>sum of weights ${fmt(row.score_sum)}`;
    }));
    return {
      type: "heatmap",
      name: phase,
      x: [...Array(E).keys()],
      y: layers.map((l) => `L${l}`),
      z,
      text,
      hovertemplate: "%{text}<extra></extra>",
      colorscale: "Viridis",
      zmin: 0,
      showscale: i === 0,
      ...(i === 0 ? { colorbar: { title: { text: value === "count" ? "tokens" : "fraction" } } } : {}),
      xaxis: i === 0 ? "x" : `x${i + 1}`,
      yaxis: "y",
    };
  });
  // A shared colour range across the panels, so they compare.
  const zmax = maxOf(rows.map((r) => r[value]), 0);
  for (const d of data) (d as Record<string, unknown>).zmax = zmax;
  const layout: Record<string, unknown> = {
    title: { text: traceTitle(trace, "Expert load per MoE layer") },
    yaxis: { title: { text: "MoE layer" }, autorange: "reversed", type: "category" },
  };
  phases.forEach((phase, i) => {
    const lo = i / phases.length;
    const hi = (i + 1) / phases.length - (i + 1 < phases.length ? 0.04 : 0);
    layout[i === 0 ? "xaxis" : `xaxis${i + 1}`] = {
      title: { text: phase === "all" ? "expert" : `expert (${phase})` },
      domain: [lo, hi],
      dtick: E > 32 ? 8 : 1,
      anchor: "y",
    };
  });
  return { data, layout };
}

// ---------------------------------------------------------------------------------------------
// 2. Token x layer chosen expert

export interface TokenExpertOptions {
  layers?: number[];
  /** Which choice to colour by (0 = top-1, the default). */
  rank?: number;
  /** Show only the first N positions. */
  maxTokens?: number;
}

export interface TokenExpertRow {
  pos: number;
  token: string;
  is_prompt: boolean;
  layer: number;
  /** The rank-th chosen expert. */
  expert: number;
  /** Its routing weight (sigmoid of the router logit). */
  score: number;
  /** Every chosen expert with its weight, best first: "3 (0.812), 0 (0.431)". */
  choices: string;
}

export function tokenExpertData(trace: GenerationTraceData, options: TokenExpertOptions = {}): TokenExpertRow[] {
  const rank = options.rank ?? 0;
  const rows: TokenExpertRow[] = [];
  for (const r of routingLayers(trace, options.layers)) {
    const n = Math.min(positions(r), options.maxTokens ?? Infinity);
    for (let t = 0; t < n; t++) {
      const experts = r.experts[t];
      if (rank >= experts.length) throw new Error(`rank ${rank} but only ${experts.length} experts are chosen per token`);
      rows.push({
        pos: t,
        token: trace.tokens[t]?.text ?? `#${t}`,
        is_prompt: trace.tokens[t]?.is_prompt ?? true,
        layer: r.layer,
        expert: experts[rank],
        score: r.scores[t][rank],
        choices: experts.map((e, k) => `${e} (${fmt(r.scores[t][k])})`).join(", "),
      });
    }
  }
  return rows;
}

/**
 * Vega-Lite map: one row per token (labelled with its text), one column per MoE layer, each cell
 * coloured by the chosen expert and labelled with its number; the weights are in the tooltip.
 */
export function tokenExpertMap(trace: GenerationTraceData, options: TokenExpertOptions = {}): VegaLiteSpec {
  const rows = tokenExpertData(trace, options);
  const E = trace.model.num_local_experts;
  const n = rows.reduce((m, r) => Math.max(m, r.pos + 1), 0);
  const labels = tokenLabels(trace.tokens, n);
  const colors = expertColors(E);
  const rank = options.rank ?? 0;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: traceTitle(trace, rank === 0 ? "Chosen expert per token and layer" : `Expert choice ${rank + 1} per token and layer`),
    data: { values: rows.map((r) => ({ ...r, ink: textColorOn(colors[r.expert]) })) },
    ...FIT_VIEW,
    height: 16 * n,
    encoding: {
      x: { field: "layer", type: "ordinal", title: "MoE layer", axis: { orient: "top", labelAngle: 0 } },
      y: { field: "pos", type: "ordinal", title: "token", axis: { labelExpr: labelExpr(labels) } },
    },
    layer: [
      {
        mark: { type: "rect" },
        encoding: {
          color: {
            field: "expert",
            type: "nominal",
            title: "expert",
            scale: { domain: [...Array(E).keys()], range: colors },
            legend: E > 32 ? null : { columns: E > 16 ? 2 : 1 },
          },
          tooltip: [
            { field: "pos", type: "quantitative", title: "position" },
            { field: "token", type: "nominal", title: "token" },
            { field: "layer", type: "ordinal", title: "layer" },
            { field: "expert", type: "ordinal", title: "expert" },
            { field: "score", type: "quantitative", title: "weight", format: ".3f" },
            { field: "choices", type: "nominal", title: "all chosen (weight)" },
          ],
        },
      },
      {
        mark: { type: "text", fontSize: 9 },
        encoding: {
          text: { field: "expert", type: "quantitative" },
          color: { field: "ink", type: "nominal", scale: null },
        },
      },
    ],
    config: { view: { stroke: null } },
  };
}

/** Plotly heatmap: token rows x MoE layer columns, the chosen expert as colour and label, all choices on hover. */
export function tokenExpertMapPlotly(trace: GenerationTraceData, options: TokenExpertOptions = {}): PlotlyFigure {
  const rows = tokenExpertData(trace, options);
  const E = trace.model.num_local_experts;
  const layers = [...new Set(rows.map((r) => r.layer))];
  const n = rows.reduce((m, r) => Math.max(m, r.pos + 1), 0);
  const labels = tokenLabels(trace.tokens, n);
  const byKey = new Map(rows.map((r) => [`${r.pos}/${r.layer}`, r]));
  const at = (t: number, l: number) => byKey.get(`${t}/${l}`)!;
  const z = Array.from({ length: n }, (_, t) => layers.map((l) => at(t, l).expert));
  const text = Array.from({ length: n }, (_, t) => layers.map((l) => {
    const r = at(t, l);
    return `${escapeHtml(displayToken(r.token))} (position ${t}${r.is_prompt ? "" : ", generated"})<br>layer ${l}: expert ${r.expert}, weight ${fmt(r.score)}` +
      `<br>chosen: ${r.choices}`;
  }));
  return {
    data: [
      {
        type: "heatmap",
        x: layers.map((l) => `L${l}`),
        y: [...Array(n).keys()],
        z,
        text,
        texttemplate: "%{z}",
        hovertemplate: "%{text}<extra></extra>",
        colorscale: discreteColorscale(expertColors(E)),
        zmin: -0.5,
        zmax: E - 0.5,
        xgap: 1,
        ygap: 1,
        colorbar: { title: { text: "expert" }, tickvals: E <= 32 ? [...Array(E).keys()] : undefined },
      },
    ],
    layout: {
      title: { text: traceTitle(trace, "Chosen expert per token and layer") },
      xaxis: { title: { text: "MoE layer" }, side: "top", type: "category" },
      yaxis: { title: { text: "token" }, autorange: "reversed", tickmode: "array", tickvals: [...Array(n).keys()], ticktext: labels },
      height: Math.max(300, 18 * n + 140),
    },
  };
}

/** A Plotly colorscale with one flat band per category (for z = category index, zmin -0.5, zmax N-0.5). */
export function discreteColorscale(colors: string[]): [number, string][] {
  const N = colors.length;
  const scale: [number, string][] = [];
  colors.forEach((c, i) => {
    scale.push([i / N, c], [(i + 1) / N, c]);
  });
  return scale;
}

// ---------------------------------------------------------------------------------------------
// 3. Text coloured by expert

export interface TextByExpertOptions {
  /** The MoE layer (required). */
  layer: number;
  rank?: number;
  /** Wrap after this many characters (default 80). */
  charsPerLine?: number;
  /** Only the prompt's tokens (default false: prompt and generated text). */
  promptOnly?: boolean;
}

export interface TextTokenBox {
  pos: number;
  token: string;
  /** The token as drawn: spaces as no-break spaces, newline as "↵". */
  shown: string;
  expert: number;
  score: number;
  is_prompt: boolean;
  line: number;
  /** First character column and width in characters. */
  col: number;
  len: number;
  color: string;
  ink: string;
}

/** Lays the tokens out in lines of monospace characters, wrapping at charsPerLine and after newlines. */
export function textByExpertLayout(trace: GenerationTraceData, options: TextByExpertOptions): TextTokenBox[] {
  const r = routingAt(trace, options.layer);
  const rank = options.rank ?? 0;
  const width = options.charsPerLine ?? 80;
  const colors = expertColors(trace.model.num_local_experts);
  const boxes: TextTokenBox[] = [];
  let line = 0;
  let col = 0;
  for (let t = 0; t < positions(r); t++) {
    const tok = trace.tokens[t] ?? { id: -1, text: `#${t}`, is_prompt: true };
    if (options.promptOnly && !tok.is_prompt) break;
    const newline = /\n/.test(tok.text);
    let shown = tok.text.replace(/\r?\n/g, "").replace(/\t/g, "⇥").replace(/ /g, "\u00a0");
    if (newline) shown += "↵";
    if (shown.length === 0) shown = "∅";
    if (col > 0 && col + shown.length > width) {
      line++;
      col = 0;
    }
    const expert = r.experts[t][rank];
    boxes.push({
      pos: t, token: tok.text, shown, expert, score: r.scores[t][rank], is_prompt: tok.is_prompt,
      line, col, len: shown.length, color: colors[expert], ink: textColorOn(colors[expert]),
    });
    col += shown.length;
    if (newline) {
      line++;
      col = 0;
    }
  }
  return boxes;
}

const CHAR_W = 8; // px per character at font size 13 in a monospace font (0.6 em, rounded up)
const LINE_H = 22;

/** Vega-Lite: the text drawn token by token, each on a background of its expert's colour. */
export function textByExpert(trace: GenerationTraceData, options: TextByExpertOptions): VegaLiteSpec {
  const boxes = textByExpertLayout(trace, options);
  const width = maxOf(boxes.map((b) => b.col + b.len), 1) * CHAR_W;
  const lines = boxes.length ? boxes[boxes.length - 1].line + 1 : 1;
  const E = trace.model.num_local_experts;
  const used = [...new Set(boxes.map((b) => b.expert))].sort((a, b) => a - b);
  const colors = expertColors(E);
  const values = boxes.map((b) => ({
    ...b,
    x0: b.col * CHAR_W,
    x1: (b.col + b.len) * CHAR_W - 1,
    y0: b.line * LINE_H + 2,
    y1: (b.line + 1) * LINE_H - 2,
    ymid: b.line * LINE_H + LINE_H / 2,
  }));
  const rank = options.rank ?? 0;
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: traceTitle(trace, `Tokens by ${rank === 0 ? "chosen" : `choice-${rank + 1}`} expert at layer ${options.layer}`),
    width,
    height: lines * LINE_H,
    data: { values },
    layer: [
      {
        mark: { type: "rect", cornerRadius: 2 },
        encoding: {
          x: { field: "x0", type: "quantitative", scale: null, axis: null },
          x2: { field: "x1" },
          y: { field: "y0", type: "quantitative", scale: null, axis: null },
          y2: { field: "y1" },
          color: {
            field: "expert",
            type: "nominal",
            title: "expert",
            scale: { domain: used, range: used.map((e) => colors[e]) },
          },
          tooltip: [
            { field: "token", type: "nominal", title: "token" },
            { field: "pos", type: "quantitative", title: "position" },
            { field: "expert", type: "ordinal", title: "expert" },
            { field: "score", type: "quantitative", title: "weight", format: ".3f" },
          ],
        },
      },
      {
        mark: { type: "text", align: "left", baseline: "middle", font: "DejaVu Sans Mono, Menlo, Consolas, monospace", fontSize: 13, dx: 0 },
        encoding: {
          x: { field: "x0", type: "quantitative", scale: null },
          y: { field: "ymid", type: "quantitative", scale: null },
          text: { field: "shown", type: "nominal" },
          color: { field: "ink", type: "nominal", scale: null },
        },
      },
    ],
    config: { view: { stroke: null } },
  };
}

/** The same as an HTML fragment (no script): spans with the expert's colour and a title tooltip. */
export function textByExpertHTML(trace: GenerationTraceData, options: TextByExpertOptions): string {
  const boxes = textByExpertLayout(trace, { ...options, charsPerLine: Infinity });
  const rank = options.rank ?? 0;
  const spans = boxes.map((b) => {
    const tip = `position ${b.pos} · expert ${b.expert} · weight ${fmt(b.score)}${b.is_prompt ? "" : " · generated"}`;
    const body = escapeHtml(b.token.replace(/\r?\n/g, "↵")) + (/\n/.test(b.token) ? "<br>" : "");
    const edge = b.is_prompt ? "" : "border-bottom:2px solid #333;";
    return `<span title="${escapeHtml(tip)}" data-expert="${b.expert}" style="background:${b.color};color:${b.ink};` +
      `border-radius:3px;padding:1px 0;${edge}">${body}</span>`;
  });
  const used = [...new Set(boxes.map((b) => b.expert))].sort((a, b) => a - b);
  const colors = expertColors(trace.model.num_local_experts);
  const legend = used.map((e) =>
    `<span style="background:${colors[e]};color:${textColorOn(colors[e])};border-radius:3px;padding:0 4px;margin-right:4px">${e}</span>`,
  ).join("");
  const heading = `${escapeHtml(traceTitle(trace, `Layer ${options.layer}: ${rank === 0 ? "chosen" : `choice-${rank + 1}`} expert per token`))}`;
  return `<div class="llama4-text-by-expert" style="font-family:sans-serif">` +
    `<div style="font-weight:bold;margin-bottom:4px">${heading}</div>` +
    `<div style="font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.9">${spans.join("")}</div>` +
    `<div style="margin-top:6px;font-size:12px">experts: ${legend}</div></div>`;
}

// ---------------------------------------------------------------------------------------------
// 4. Routing entropy

export interface EntropyOptions {
  layers?: number[];
  /** Divide by ln(num_experts) so 1 = uniform routing (default false: nats). */
  normalize?: boolean;
}

export interface EntropyRow {
  pos: number;
  token: string;
  layer: number;
  /** Entropy of softmax(router_logits) over the experts, in nats (or normalized). */
  entropy: number;
}

export function routingEntropyData(trace: GenerationTraceData, options: EntropyOptions = {}): EntropyRow[] {
  const E = trace.model.num_local_experts;
  const scale = options.normalize ? 1 / Math.log(E) : 1;
  const rows: EntropyRow[] = [];
  for (const r of routingLayers(trace, options.layers)) {
    r.router_logits.forEach((logits, t) => {
      rows.push({ pos: t, token: trace.tokens[t]?.text ?? `#${t}`, layer: r.layer, entropy: entropy(softmax(logits)) * scale });
    });
  }
  return rows;
}

export interface EntropyMeanRow {
  pos: number;
  token: string;
  mean: number;
  min: number;
  max: number;
}

/** Per position: mean, min and max of the routing entropy over the MoE layers. */
export function routingEntropyMean(trace: GenerationTraceData, options: EntropyOptions = {}): EntropyMeanRow[] {
  const rows = routingEntropyData(trace, options);
  const byPos = new Map<number, number[]>();
  for (const r of rows) {
    const list = byPos.get(r.pos) ?? [];
    list.push(r.entropy);
    byPos.set(r.pos, list);
  }
  return [...byPos.entries()].sort((a, b) => a[0] - b[0]).map(([pos, hs]) => ({
    pos,
    token: trace.tokens[pos]?.text ?? `#${pos}`,
    mean: hs.reduce((s, h) => s + h, 0) / hs.length,
    min: minOf(hs),
    max: maxOf(hs),
  }));
}

/**
 * Vega-Lite: "per_layer" is a token x layer heatmap of the entropy; "mean" (default) draws the
 * mean over layers per token with the min..max band and the uniform-routing ceiling as a rule.
 */
export function routingEntropy(trace: GenerationTraceData, options: EntropyOptions & { mode?: "mean" | "per_layer" } = {}): VegaLiteSpec {
  const E = trace.model.num_local_experts;
  const unit = options.normalize ? "entropy / ln(E)" : "entropy (nats)";
  const ceiling = options.normalize ? 1 : Math.log(E);
  if (options.mode === "per_layer") {
    const rows = routingEntropyData(trace, options);
    const n = rows.reduce((m, r) => Math.max(m, r.pos + 1), 0);
    return {
      $schema: VEGA_LITE_SCHEMA,
      title: traceTitle(trace, "Routing entropy per token and MoE layer"),
      data: { values: rows },
      mark: { type: "rect" },
      ...FIT_VIEW,
      height: 16 * new Set(rows.map((r) => r.layer)).size,
      encoding: {
        x: { field: "pos", type: "ordinal", title: "token", axis: { labelExpr: labelExpr(tokenLabels(trace.tokens, n)), labelAngle: -60 } },
        y: { field: "layer", type: "ordinal", title: "MoE layer" },
        color: { field: "entropy", type: "quantitative", title: unit, scale: { scheme: "magma", domain: [0, ceiling] } },
        tooltip: [
          { field: "token", type: "nominal" },
          { field: "pos", type: "quantitative", title: "position" },
          { field: "layer", type: "ordinal" },
          { field: "entropy", type: "quantitative", format: ".4f", title: unit },
        ],
      },
      config: { view: { stroke: null } },
    };
  }
  const rows = routingEntropyMean(trace, options);
  const labels = tokenLabels(trace.tokens, rows.length);
  const x = { field: "pos", type: "quantitative", title: "token", scale: { domain: [0, Math.max(rows.length - 1, 1)], nice: false },
    axis: { labelExpr: labelExpr(labels), values: rows.map((r) => r.pos), labelAngle: -60, grid: false } };
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: traceTitle(trace, "Routing entropy per token (mean over MoE layers, band = min..max)"),
    ...FIT_VIEW,
    height: 200,
    layer: [
      {
        data: { values: rows },
        mark: { type: "area", opacity: 0.25, color: "#4c78a8" },
        encoding: { x, y: { field: "min", type: "quantitative", title: unit, scale: { domain: [0, ceiling * 1.05] } }, y2: { field: "max" } },
      },
      {
        data: { values: rows },
        mark: { type: "line", point: true, color: "#4c78a8" },
        encoding: {
          x,
          y: { field: "mean", type: "quantitative" },
          tooltip: [
            { field: "token", type: "nominal" },
            { field: "pos", type: "quantitative", title: "position" },
            { field: "mean", type: "quantitative", format: ".4f" },
            { field: "min", type: "quantitative", format: ".4f" },
            { field: "max", type: "quantitative", format: ".4f" },
          ],
        },
      },
      {
        data: { values: [{ ceiling }] },
        mark: { type: "rule", strokeDash: [4, 4], color: "#888" },
        encoding: { y: { field: "ceiling", type: "quantitative" } },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// 5. Transitions between consecutive MoE layers

export interface TransitionOptions {
  layers?: number[];
  /** Which choice to follow (0 = top-1, the default). */
  rank?: number;
}

export interface TransitionMatrix {
  from_layer: number;
  to_layer: number;
  /** counts[a][b]: tokens whose expert was a at from_layer and b at to_layer. */
  counts: number[][];
}

/** Transition counts of the chosen expert between each pair of consecutive traced MoE layers. */
export function expertTransitions(trace: GenerationTraceData, options: TransitionOptions = {}): TransitionMatrix[] {
  const E = trace.model.num_local_experts;
  const rank = options.rank ?? 0;
  const layers = routingLayers(trace, options.layers);
  const out: TransitionMatrix[] = [];
  for (let i = 0; i + 1 < layers.length; i++) {
    const a = layers[i];
    const b = layers[i + 1];
    const counts = Array.from({ length: E }, () => new Array<number>(E).fill(0));
    const n = Math.min(positions(a), positions(b));
    for (let t = 0; t < n; t++) counts[a.experts[t][rank]][b.experts[t][rank]]++;
    out.push({ from_layer: a.layer, to_layer: b.layer, counts });
  }
  return out;
}

/**
 * Vega-Lite: one from x to heatmap per pair of consecutive MoE layers (faceted). Only non-zero
 * cells are listed (Maverick has 128 x 128 cells per pair); empty cells stay blank.
 */
export function transitionHeatmap(trace: GenerationTraceData, options: TransitionOptions & { columns?: number } = {}): VegaLiteSpec {
  const E = trace.model.num_local_experts;
  const values = expertTransitions(trace, options).flatMap((m) =>
    m.counts.flatMap((row, from) =>
      row.flatMap((count, to) => (count > 0 ? [{ pair: `L${m.from_layer} → L${m.to_layer}`, from_layer: m.from_layer, from, to, count }] : [])),
    ),
  );
  // The grid wraps after `columns` panels, each sized so that a row fits FIT_WIDTH.
  const pairs = new Set(values.map((v) => v.pair)).size;
  const columns = options.columns ?? Math.max(1, Math.min(4, pairs));
  const step = fitStep(E, columns, 20, 30);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: traceTitle(trace, "Expert transitions between consecutive MoE layers"),
    data: { values },
    facet: { field: "pair", type: "nominal", title: null, sort: { field: "from_layer" } },
    columns,
    spec: {
      width: { step },
      height: { step },
      mark: { type: "rect" },
      encoding: {
        x: { field: "to", type: "ordinal", title: "expert at next layer", scale: { domain: [...Array(E).keys()] }, axis: expertAxis(E) },
        y: { field: "from", type: "ordinal", title: "expert", scale: { domain: [...Array(E).keys()] }, axis: expertAxis(E) },
        color: { field: "count", type: "quantitative", title: "tokens", scale: { scheme: "blues" } },
        tooltip: [
          { field: "pair", type: "nominal" },
          { field: "from", type: "ordinal", title: "from expert" },
          { field: "to", type: "ordinal", title: "to expert" },
          { field: "count", type: "quantitative", title: "tokens" },
        ],
      },
    },
    config: { view: { stroke: null } },
  };
}

/**
 * Plotly: the transition matrix of one pair of layers as a heatmap, with a dropdown that swaps in
 * the matrix of another pair (the first pair is shown at start).
 */
export function transitionHeatmapPlotly(trace: GenerationTraceData, options: TransitionOptions = {}): PlotlyFigure {
  const E = trace.model.num_local_experts;
  const mats = expertTransitions(trace, options);
  if (mats.length === 0) throw new Error("transitions need at least two traced MoE layers");
  // The hover names the pair through the template (no per-cell text: Maverick has 128 x 128 cells a pair).
  const hover = (m: TransitionMatrix) =>
    `layer ${m.from_layer} expert %{y} → layer ${m.to_layer} expert %{x}: %{z} tokens<extra></extra>`;
  const title = (m: TransitionMatrix) => traceTitle(trace, `Expert transitions L${m.from_layer} → L${m.to_layer}`);
  const buttons = mats.map((m) => ({
    label: `L${m.from_layer} → L${m.to_layer}`,
    method: "update",
    args: [{ z: [m.counts], hovertemplate: [hover(m)] }, { title: { text: title(m) } }],
  }));
  const first = mats[0];
  return {
    data: [
      {
        type: "heatmap",
        x: [...Array(E).keys()],
        y: [...Array(E).keys()],
        z: first.counts,
        hovertemplate: hover(first),
        colorscale: "Blues",
        // Plotly uses zmin/zmax only as a pair; one range for every pair keeps the dropdown's matrices comparable.
        zmin: 0,
        zmax: maxOf(mats.flatMap((m) => m.counts.flat()), 1),
        colorbar: { title: { text: "tokens" } },
      },
    ],
    layout: {
      title: { text: title(first) },
      xaxis: { title: { text: "expert at next layer" }, dtick: E > 32 ? 8 : 1 },
      yaxis: { title: { text: "expert" }, autorange: "reversed", dtick: E > 32 ? 8 : 1 },
      updatemenus: mats.length > 1 ? [{ type: "dropdown", buttons, x: 1, xanchor: "right", y: 1.15, yanchor: "top" }] : [],
    },
  };
}

/** Plotly Sankey: nodes are (layer, expert) with tokens, links follow tokens between consecutive MoE layers. */
export function transitionSankey(trace: GenerationTraceData, options: TransitionOptions = {}): PlotlyFigure {
  const mats = expertTransitions(trace, options);
  const colors = expertColors(trace.model.num_local_experts);
  const index = new Map<string, number>();
  const label: string[] = [];
  const nodeColor: string[] = [];
  const node = (layer: number, e: number) => {
    const key = `${layer}:${e}`;
    if (!index.has(key)) {
      index.set(key, label.length);
      label.push(`L${layer} E${e}`);
      nodeColor.push(colors[e]);
    }
    return index.get(key)!;
  };
  const source: number[] = [];
  const target: number[] = [];
  const value: number[] = [];
  const linkColor: string[] = [];
  for (const m of mats) {
    m.counts.forEach((row, a) => row.forEach((c, b) => {
      if (c === 0) return;
      source.push(node(m.from_layer, a));
      target.push(node(m.to_layer, b));
      value.push(c);
      linkColor.push(hexWithAlpha(colors[a], 0.35));
    }));
  }
  return {
    data: [
      {
        type: "sankey",
        arrangement: "snap",
        node: { label, color: nodeColor, pad: 6, thickness: 12 },
        link: { source, target, value, color: linkColor, hovertemplate: "%{source.label} → %{target.label}: %{value} tokens<extra></extra>" },
      },
    ],
    layout: { title: { text: traceTitle(trace, "Tokens flowing between experts of consecutive MoE layers") } },
  };
}

function hexWithAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

// ---------------------------------------------------------------------------------------------
// 6. Two traces compared

export interface CompareOptions extends Omit<LoadOptions, "split" | "value"> {
  /** "side_by_side" (default): both load heatmaps with one colour scale; "difference": b - a. */
  mode?: "side_by_side" | "difference";
  /** Names of the two traces (default "A", "B"). */
  labels?: [string, string];
}

export interface CompareRow {
  layer: number;
  expert: number;
  a: number;
  b: number;
  /** b - a, in fractions of each trace's tokens (the traces may differ in length). */
  diff: number;
}

export function compareRoutingData(a: GenerationTraceData, b: GenerationTraceData, options: CompareOptions = {}): CompareRow[] {
  if (a.model.num_local_experts !== b.model.num_local_experts) {
    throw new Error(`cannot compare traces with ${a.model.num_local_experts} and ${b.model.num_local_experts} experts`);
  }
  const la = routingLoadData(a, options);
  const lb = routingLoadData(b, options);
  const rows: CompareRow[] = [];
  const byKey = new Map(lb.map((r) => [`${r.layer}/${r.expert}`, r]));
  for (const ra of la) {
    const rb = byKey.get(`${ra.layer}/${ra.expert}`);
    if (!rb) continue;
    rows.push({ layer: ra.layer, expert: ra.expert, a: ra.fraction, b: rb.fraction, diff: rb.fraction - ra.fraction });
  }
  if (rows.length === 0) throw new Error("the two traces have no MoE layer in common");
  return rows;
}

/** Vega-Lite: the load (fraction of tokens) of two traces side by side, or their difference. */
export function compareRouting(a: GenerationTraceData, b: GenerationTraceData, options: CompareOptions = {}): VegaLiteSpec {
  const [na, nb] = options.labels ?? ["A", "B"];
  const rows = compareRoutingData(a, b, options);
  const E = a.model.num_local_experts;
  const x = { field: "expert", type: "ordinal", title: "expert", scale: { domain: [...Array(E).keys()] }, axis: expertAxis(E) };
  const y = { field: "layer", type: "ordinal", title: "MoE layer" };
  if (options.mode === "difference") {
    const m = maxOf(rows.map((r) => Math.abs(r.diff)), 1e-9);
    return {
      $schema: VEGA_LITE_SCHEMA,
      title: `Expert load: ${nb} − ${na} (fraction of tokens)`,
      data: { values: rows },
      mark: { type: "rect" },
      ...FIT_VIEW,
      height: 16 * new Set(rows.map((r) => r.layer)).size,
      encoding: {
        x,
        y,
        color: { field: "diff", type: "quantitative", title: `${nb} − ${na}`, scale: { scheme: "redblue", domain: [-m, m], reverse: true } },
        tooltip: [
          { field: "layer", type: "ordinal" },
          { field: "expert", type: "ordinal" },
          { field: "a", type: "quantitative", title: na, format: ".3f" },
          { field: "b", type: "quantitative", title: nb, format: ".3f" },
          { field: "diff", type: "quantitative", title: `${nb} − ${na}`, format: "+.3f" },
        ],
      },
      config: { view: { stroke: null } },
    };
  }
  const values = rows.flatMap((r) => [
    { trace: na, order: 0, layer: r.layer, expert: r.expert, fraction: r.a },
    { trace: nb, order: 1, layer: r.layer, expert: r.expert, fraction: r.b },
  ]);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: `Expert load (fraction of tokens): ${na} vs ${nb}`,
    data: { values },
    mark: { type: "rect" },
    width: { step: fitStep(E, 2) },
    height: { step: 16 },
    encoding: {
      column: { field: "trace", type: "nominal", title: null, sort: [na, nb] },
      x,
      y,
      color: { field: "fraction", type: "quantitative", title: "fraction of tokens", scale: { scheme: "viridis", zero: true } },
      tooltip: [
        { field: "trace", type: "nominal" },
        { field: "layer", type: "ordinal" },
        { field: "expert", type: "ordinal" },
        { field: "fraction", type: "quantitative", format: ".3f" },
      ],
    },
    config: { view: { stroke: null } },
  };
}
