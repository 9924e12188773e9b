// viz/: every spec checked against numbers worked out by hand on a small trace
// (fixtures/viz/hand-trace.json), Vega-Lite specs compiled by vega-lite with no warning, Plotly
// figures validated by plotly.js itself (under jsdom), a PNG render inspected pixel by pixel, and
// the config-only memory estimator checked on the published Scout / Maverick sizes and on the tiny
// checkpoints' own safetensors headers.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { closeSync, openSync, readFileSync, readSync, readdirSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { createRequire } from "node:module";

import type { GenerationTraceData, LayerRouting } from "../sdk/trace";
import { AutoTokenizer, FbgemmFp8Config, Llama4ForCausalLM, RawImage, default_model } from "../sdk";

const ROOT_DIR = join(__dirname, "..");
import {
  FIT_WIDTH,
  fitStep,
  PLOTLY_MIME,
  VEGALITE_MIME,
  attentionHeadGrid,
  attentionHeatmap,
  attentionHeatmapPlotly,
  chunkBoundaries,
  compareRouting,
  compileVegaLite,
  describeEstimate,
  estimateChart,
  estimateChartData,
  estimateMemory,
  expertTransitions,
  htmlBundle,
  kvCacheChart,
  longContextMemoryChart,
  longContextMemoryData,
  longContextTimeChart,
  longContextTimeData,
  mimeBundle,
  peakMemoryChart,
  plotlyStaticSpec,
  routingEntropy,
  routingEntropyData,
  routingEntropyMean,
  routingHeatmap,
  routingHeatmapPlotly,
  routingLoadData,
  svgToPNG,
  textByExpert,
  textByExpertHTML,
  textByExpertLayout,
  toPNG,
  toSVG,
  tokenExpertMap,
  tokenExpertMapPlotly,
  transitionHeatmap,
  transitionHeatmapPlotly,
  transitionSankey,
  weightMemoryChart,
  imageAttention,
  imageAttentionData,
  type ImagePatchLayout,
  type PlotlyFigure,
  type VegaLiteSpec,
} from "../viz";
import { FIXTURES, modelDir } from "./helpers/fixtures";

const trace = JSON.parse(readFileSync(join(FIXTURES, "viz", "hand-trace.json"), "utf8")) as GenerationTraceData;
const config = (name: string) => JSON.parse(readFileSync(join(FIXTURES, "configs", name), "utf8")) as Record<string, unknown>;

// --- helpers ---------------------------------------------------------------------------------

function expectCompiles(spec: VegaLiteSpec): void {
  expect(spec.$schema).toBe("https://vega.github.io/schema/vega-lite/v5.json");
  const { warnings } = compileVegaLite(spec);
  expect(warnings).toEqual([]);
}

type Row = Record<string, unknown>;

/** The token labels inside a label/calculate expression (the array literal is JSON-compatible). */
const exprLabels = (expr: string): string[] => JSON.parse(/^(\[.*\])\[/.exec(expr)![1]) as string[];
const values = (spec: Row): Row[] => (spec.data as { values: Row[] }).values;
const cell = (rows: Row[], match: Row): Row => {
  const found = rows.filter((r) => Object.entries(match).every(([k, v]) => r[k] === v));
  expect(found, JSON.stringify(match)).toHaveLength(1);
  return found[0];
};

function softmaxEntropy(logits: number[]): number {
  const m = Math.max(...logits);
  const ex = logits.map((l) => Math.exp(l - m));
  const s = ex.reduce((a, b) => a + b, 0);
  return -ex.reduce((h, e) => h + (e / s) * Math.log(e / s), 0);
}

/** Sum of the tensor sizes listed in the safetensors headers of a checkpoint directory. */
function checkpointParams(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".safetensors") && n.startsWith("model"))) {
    const fd = openSync(join(dir, f), "r");
    try {
      const len = Buffer.alloc(8);
      readSync(fd, len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE(0));
      const header = Buffer.alloc(n);
      readSync(fd, header, 0, n, 8);
      for (const [name, entry] of Object.entries(JSON.parse(header.toString("utf8")) as Record<string, { shape: number[] }>)) {
        if (name !== "__metadata__") total += entry.shape.reduce((a, b) => a * b, 1);
      }
    } finally {
      closeSync(fd);
    }
  }
  return total;
}

// Plotly's own schema validation, run inside a jsdom window (plotly.js needs a DOM to load).
// jsdom ships no type declarations (and @types/jsdom is not installed): the little used here is typed by hand.
interface JSDOM {
  window: { close(): void };
}
const { JSDOM } = createRequire(__filename)("jsdom") as { JSDOM: new (html: string, options: Record<string, unknown>) => JSDOM };
let dom: JSDOM;
let Plotly: { validate(data: unknown, layout: unknown): unknown[] | undefined };
function plotlyErrors(fig: PlotlyFigure): unknown[] {
  const inWindow = (dom.window as unknown as { JSON: JSON }).JSON.parse(JSON.stringify(fig)) as PlotlyFigure;
  return Plotly.validate(inWindow.data, inWindow.layout) ?? [];
}

beforeAll(() => {
  dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true, runScripts: "outside-only" });
  const win = dom.window as unknown as Record<string, unknown> & { eval(src: string): unknown; HTMLCanvasElement: { prototype: Record<string, unknown> }; URL: Record<string, unknown> };
  win.HTMLCanvasElement.prototype.getContext = () => null; // no canvas package: plotly only probes for WebGL
  win.URL.createObjectURL = () => "";
  win.TextDecoder = TextDecoder;
  win.TextEncoder = TextEncoder;
  win.eval(readFileSync(join(__dirname, "..", "node_modules", "plotly.js-dist-min", "plotly.min.js"), "utf8"));
  Plotly = win.Plotly as typeof Plotly;
});

afterAll(() => dom?.window.close());

// --- the fixture itself --------------------------------------------------------------------

test("the hand-made trace is self-consistent: experts are the top-2 router logits, scores their sigmoid", () => {
  for (const r of trace.routing) {
    r.router_logits.forEach((row, t) => {
      const order = [...row.keys()].sort((a, b) => row[b] - row[a]);
      expect(r.experts[t]).toEqual(order.slice(0, 2));
      r.experts[t].forEach((e, k) => expect(r.scores[t][k]).toBeCloseTo(1 / (1 + Math.exp(-row[e])), 12));
    });
  }
});

describe("routing", () => {
  test("load heatmap: counts and fractions per layer and expert, all tokens and prompt vs generated", () => {
    const spec = routingHeatmap(trace);
    expectCompiles(spec);
    const rows = values(spec);
    // Worked out by hand from the fixture's experts (7 tokens x 2 experts per layer).
    const expected: Record<number, number[]> = { 1: [5, 4, 2, 3], 3: [3, 2, 6, 3] };
    expect(rows).toHaveLength(8);
    for (const [layer, counts] of Object.entries(expected)) {
      counts.forEach((count, expert) => {
        const r = cell(rows, { layer: Number(layer), expert });
        expect(r.count).toBe(count);
        expect(r.tokens).toBe(7);
        expect(r.fraction).toBe(count / 7);
      });
    }
    const l1e0 = cell(rows, { layer: 1, expert: 0 });
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    // expert 0 at layer 1: tokens 0, 2, 3, 4, 6 with logits 2, 1, 0.5, 3, 1
    expect(l1e0.score_sum).toBeCloseTo(sig(2) + sig(1) + sig(0.5) + sig(3) + sig(1), 12);

    const split = routingHeatmap(trace, { split: true, value: "fraction" });
    expectCompiles(split);
    const srows = values(split);
    expect(srows.filter((r) => r.layer === 1 && r.phase === "prompt").map((r) => r.count)).toEqual([4, 2, 2, 2]);
    expect(srows.filter((r) => r.layer === 1 && r.phase === "generated").map((r) => r.count)).toEqual([1, 2, 0, 1]);
    expect(cell(srows, { layer: 1, expert: 1, phase: "generated" }).fraction).toBe(1);
    expect((split.encoding as Row).column).toMatchObject({ field: "phase" });

    // Only the top-1 choice.
    expect(routingLoadData(trace, { rank: 0, layers: [3] }).map((r) => r.count)).toEqual([2, 1, 3, 1]);
  });

  test("load heatmap in Plotly: valid figure, z = counts, hover text per cell", () => {
    const fig = routingHeatmapPlotly(trace);
    expect(plotlyErrors(fig)).toEqual([]);
    expect(fig.data[0].z).toEqual([[5, 4, 2, 3], [3, 2, 6, 3]]);
    expect((fig.data[0].text as string[][])[1][2]).toContain("6 of 7 tokens");
    const split = routingHeatmapPlotly(trace, { split: true });
    expect(plotlyErrors(split)).toEqual([]);
    expect(split.data.map((d) => d.z)).toEqual([[[4, 2, 2, 2], [2, 2, 4, 2]], [[1, 2, 0, 1], [1, 0, 2, 1]]]);
  });

  test("token x layer map: chosen expert and weight per token, token texts as labels", () => {
    const spec = tokenExpertMap(trace);
    expectCompiles(spec);
    const rows = values(spec);
    expect(rows).toHaveLength(14);
    expect(rows.filter((r) => r.layer === 1).map((r) => r.expert)).toEqual([0, 1, 2, 3, 0, 1, 1]);
    expect(rows.filter((r) => r.layer === 3).map((r) => r.expert)).toEqual([2, 0, 2, 1, 2, 0, 3]);
    const r = cell(rows, { layer: 3, pos: 6 });
    expect(r.token).toBe(" mat");
    expect(r.score).toBeCloseTo(1 / (1 + Math.exp(-3)), 12);
    expect(r.choices).toBe("3 (0.953), 2 (0.731)");
    const y = (spec.encoding as { y: { axis: { labelExpr: string } } }).y;
    expect(exprLabels(y.axis.labelExpr)).toEqual(["The", " cat", " sat", "↵", " on", " the", " mat"]);

    const fig = tokenExpertMapPlotly(trace);
    expect(plotlyErrors(fig)).toEqual([]);
    expect(fig.data[0].z).toEqual([[0, 2], [1, 0], [2, 2], [3, 1], [0, 2], [1, 0], [1, 3]]);
    expect((fig.data[0].text as string[][])[6][1]).toContain("expert 3, weight 0.953");
    expect((fig.layout.yaxis as Row).ticktext).toEqual(["The", " cat", " sat", "↵", " on", " the", " mat"]);
  });

  test("text coloured by expert: line layout, Vega-Lite text marks and an HTML rendering", () => {
    const boxes = textByExpertLayout(trace, { layer: 1 });
    expect(boxes.map((b) => b.expert)).toEqual([0, 1, 2, 3, 0, 1, 1]);
    // "The cat sat↵" on line 0, then " on the mat" on line 1.
    expect(boxes.map((b) => [b.line, b.col, b.len])).toEqual([[0, 0, 3], [0, 3, 4], [0, 7, 4], [0, 11, 1], [1, 0, 3], [1, 3, 4], [1, 7, 4]]);
    const wrapped = textByExpertLayout(trace, { layer: 1, charsPerLine: 8 });
    expect(wrapped.map((b) => b.line)).toEqual([0, 0, 1, 1, 2, 2, 3]);

    const spec = textByExpert(trace, { layer: 3 });
    expectCompiles(spec);
    const v = values(spec);
    expect(v.map((r) => r.expert)).toEqual([2, 0, 2, 1, 2, 0, 3]);
    expect(v.map((r) => r.shown)).toEqual(["The", "\u00a0cat", "\u00a0sat", "↵", "\u00a0on", "\u00a0the", "\u00a0mat"]);

    const html = textByExpertHTML(trace, { layer: 1 });
    expect(html.match(/<span title=/g)).toHaveLength(7);
    expect([...html.matchAll(/data-expert="(\d+)"/g)].map((m) => Number(m[1]))).toEqual([0, 1, 2, 3, 0, 1, 1]);
    expect(html).toContain("position 6 · expert 1 · weight 0.881 · generated");
    expect(html).not.toMatch(/<script/);
    const escaped = textByExpertHTML({ ...trace, tokens: trace.tokens.map((t, i) => (i === 0 ? { ...t, text: "<b>&" } : t)) }, { layer: 1 });
    expect(escaped).toContain("&lt;b&gt;&amp;");
    expect(htmlBundle(html, "text")).toEqual({ "text/html": html, "text/plain": "text" });
  });

  test("entropy of softmax(router_logits) per token and layer, and the mean over layers", () => {
    const rows = routingEntropyData(trace);
    expect(rows).toHaveLength(14);
    for (const r of trace.routing) {
      r.router_logits.forEach((logits, t) => {
        expect(cell(rows as unknown as Row[], { layer: r.layer, pos: t }).entropy).toBeCloseTo(softmaxEntropy(logits), 12);
      });
    }
    // [0.5, 0, 0.2, 1] by hand: p = e^l / sum
    const z = Math.exp(0.5) + 1 + Math.exp(0.2) + Math.exp(1);
    const p = [Math.exp(0.5) / z, 1 / z, Math.exp(0.2) / z, Math.exp(1) / z];
    expect(rows.find((r) => r.layer === 1 && r.pos === 3)!.entropy).toBeCloseTo(-p.reduce((h, x) => h + x * Math.log(x), 0), 12);
    // Uniform logits: ln(E) nats, 1 when normalized.
    const uniform: GenerationTraceData = {
      ...trace,
      routing: [{ layer: 1, router_logits: [[0.3, 0.3, 0.3, 0.3]], experts: [[0, 1]], scores: [[0.5, 0.5]] }],
      tokens: trace.tokens.slice(0, 1),
    };
    expect(routingEntropyData(uniform)[0].entropy).toBeCloseTo(Math.log(4), 14);
    expect(routingEntropyData(uniform, { normalize: true })[0].entropy).toBeCloseTo(1, 14);

    const mean = routingEntropyMean(trace);
    const h1 = softmaxEntropy(trace.routing[0].router_logits[5]);
    const h3 = softmaxEntropy(trace.routing[1].router_logits[5]);
    expect(mean[5].mean).toBeCloseTo((h1 + h3) / 2, 12);
    expect(mean[5].min).toBeCloseTo(Math.min(h1, h3), 12);
    expect(mean[5].max).toBeCloseTo(Math.max(h1, h3), 12);

    const meanSpec = routingEntropy(trace);
    expectCompiles(meanSpec);
    const ceiling = (meanSpec.layer as Row[])[2];
    expect(values(ceiling)).toEqual([{ ceiling: Math.log(4) }]);
    const perLayer = routingEntropy(trace, { mode: "per_layer", normalize: true });
    expectCompiles(perLayer);
    expect(cell(values(perLayer), { layer: 3, pos: 0 }).entropy).toBeCloseTo(softmaxEntropy([0, 0, 3, 1]) / Math.log(4), 12);
  });

  test("transitions between consecutive MoE layers: counts, heatmaps and a Sankey", () => {
    const [m] = expertTransitions(trace);
    expect(m.from_layer).toBe(1);
    expect(m.to_layer).toBe(3);
    // top-1 pairs by token: 0->2, 1->0, 2->2, 3->1, 0->2, 1->0, 1->3
    expect(m.counts).toEqual([
      [0, 0, 2, 0],
      [2, 0, 0, 1],
      [0, 0, 1, 0],
      [0, 1, 0, 0],
    ]);
    expect(expertTransitions(trace, { rank: 1 })[0].counts.flat().reduce((a, b) => a + b, 0)).toBe(7);

    const spec = transitionHeatmap(trace);
    expectCompiles(spec);
    expect(cell(values(spec), { from: 1, to: 0 }).count).toBe(2);
    expect(values(spec).reduce((s, r) => s + (r.count as number), 0)).toBe(7);

    const fig = transitionHeatmapPlotly(trace);
    expect(plotlyErrors(fig)).toEqual([]);
    expect(fig.data[0].z).toEqual(m.counts);

    const sankey = transitionSankey(trace);
    expect(plotlyErrors(sankey)).toEqual([]);
    const { node, link } = sankey.data[0] as { node: { label: string[] }; link: { source: number[]; target: number[]; value: number[] } };
    const links = link.source.map((s, i) => `${node.label[s]}>${node.label[link.target[i]]}=${link.value[i]}`).sort();
    expect(links).toEqual(["L1 E0>L3 E2=2", "L1 E1>L3 E0=2", "L1 E1>L3 E3=1", "L1 E2>L3 E2=1", "L1 E3>L3 E1=1"]);
  });

  test("two traces compared: side by side on one colour scale, and the difference", () => {
    // B: the first four tokens only (a different prompt length; fractions make them comparable).
    const b: GenerationTraceData = {
      ...trace,
      tokens: trace.tokens.slice(0, 4),
      routing: trace.routing.map((r) => ({
        layer: r.layer, router_logits: r.router_logits.slice(0, 4), experts: r.experts.slice(0, 4), scores: r.scores.slice(0, 4),
      })),
    };
    const side = compareRouting(trace, b, { labels: ["long", "short"] });
    expectCompiles(side);
    // layer 1 counts: long [5,4,2,3]/7, short (tokens 0..3) [3,2,2,1]/4
    expect(cell(values(side), { trace: "long", layer: 1, expert: 0 }).fraction).toBe(5 / 7);
    expect(cell(values(side), { trace: "short", layer: 1, expert: 0 }).fraction).toBe(3 / 4);
    const diff = compareRouting(trace, b, { mode: "difference" });
    expectCompiles(diff);
    expect(cell(values(diff), { layer: 1, expert: 3 }).diff).toBeCloseTo(1 / 4 - 3 / 7, 15);
    expect(cell(values(diff), { layer: 3, expert: 2 }).diff).toBeCloseTo(3 / 4 - 6 / 7, 15);
    expect(() => compareRouting(trace, { ...b, model: { ...b.model, num_local_experts: 8 } })).toThrow(/4 and 8 experts/);
  });

  test("routing of the tiny real model (router_logits of forward) goes through the same functions", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
    const ids = [1, 17, 256, 43, 99, 5, 311, 42, 8, 480];
    const out = await model.forward({ input_ids: [ids], output_router_logits: true });
    const text = model.config as unknown as { moe_layers: number[]; num_local_experts: number; num_experts_per_tok: number; layer_types: string[] };
    const E = text.num_local_experts;
    const k = text.num_experts_per_tok;
    const routing: LayerRouting[] = out.router_logits!.map((tensor, i) => {
      const logits = Array.from({ length: tensor.dims[0] }, (_, t) => Array.from(tensor.data.subarray(t * E, (t + 1) * E) as Float32Array));
      const experts = logits.map((row) => [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, k));
      return { layer: text.moe_layers[i], router_logits: logits, experts, scores: experts.map((ex, t) => ex.map((e) => 1 / (1 + Math.exp(-logits[t][e])))) };
    });
    const real: GenerationTraceData = {
      version: 1,
      model: { name: "tiny-llama4-f32", num_hidden_layers: 4, num_local_experts: E, num_experts_per_tok: k, moe_layers: text.moe_layers,
        layer_types: text.layer_types, attention_chunk_size: 8, num_attention_heads: 4 },
      tokens: ids.map((id) => ({ id, text: `#${id}`, is_prompt: true })),
      routing, attention: [], memory: null, interventions: [],
    };
    expect(routing.map((r) => r.layer)).toEqual([1, 3]);
    const load = routingLoadData(real);
    for (const r of routing) {
      const tally = new Array(E).fill(0);
      for (const ex of r.experts) for (const e of ex) tally[e]++;
      expect(load.filter((x) => x.layer === r.layer).map((x) => x.count)).toEqual(tally);
      expect(tally.reduce((a, b) => a + b, 0)).toBe(ids.length * k);
    }
    const ent = routingEntropyData(real);
    expect(ent).toHaveLength(2 * ids.length);
    ent.forEach((row) => expect(row.entropy).toBeCloseTo(softmaxEntropy(routing.find((r) => r.layer === row.layer)!.router_logits[row.pos]), 10));
    expectCompiles(routingHeatmap(real));
    expect(plotlyErrors(tokenExpertMapPlotly(real))).toEqual([]);
  });
});

describe("attention", () => {
  test("a chunked layer's heatmap marks the chunk boundaries and greys the masked cells; a NoPE layer has neither", () => {
    expect(chunkBoundaries(7, 3)).toEqual([3, 6]);
    expect(chunkBoundaries(6, 3)).toEqual([3]);
    expect(chunkBoundaries(7, null)).toEqual([]);

    const chunked = attentionHeatmap(trace, { layer: 0, head: 0 });
    expectCompiles(chunked);
    const layers = chunked.layer as Row[];
    const rules = layers.filter((l) => (l.mark as Row).type === "rule");
    expect(rules).toHaveLength(2);
    for (const r of rules) expect(values(r).map((v) => v.pos)).toEqual([3, 6]);
    expect((chunked.title as Row).text).toMatch(/layer 0 \(chunked attention, RoPE, chunk 3\), head 0/);
    // 28 causal cells; the chunk mask hides keys before the query's chunk: queries 3..5 keys 0..2, query 6 keys 0..5.
    const visible = values(layers[0]);
    expect(visible).toHaveLength(28 - 15);
    expect(visible.every((c) => (c.k as number) >= Math.floor((c.q as number) / 3) * 3 && (c.k as number) <= (c.q as number))).toBe(true);
    expect(cell(visible, { q: 4, k: 3 }).p).toBe(0.5); // head 0: uniform over keys 3..4
    expect(layers[1].name).toBe("masked");
    expect(values(layers[1]).map(({ k0, k1, q0, q1 }) => ({ k0, k1, q0, q1 }))).toEqual([
      { k0: 0, k1: 3, q0: 3, q1: 6 },
      { k0: 0, k1: 6, q0: 6, q1: 7 },
    ]);
    // Token texts for the tooltips are computed by Vega from the position.
    const keyCalc = (layers[0].transform as Row[]).find((x) => x.as === "key")!.calculate as string;
    expect(keyCalc.endsWith("[datum.k]")).toBe(true);
    expect(exprLabels(keyCalc)).toEqual(["The", " cat", " sat", "↵", " on", " the", " mat"]);

    const full = attentionHeatmap(trace, { layer: 1, head: 0 });
    expectCompiles(full);
    const flayers = full.layer as Row[];
    expect(flayers).toHaveLength(1);
    expect(flayers.some((l) => (l.mark as Row).type === "rule")).toBe(false);
    expect(values(flayers[0])).toHaveLength(28);
    expect(cell(values(flayers[0]), { q: 6, k: 0 }).p).toBe(1 / 7);
    expect((full.title as Row).text).toMatch(/layer 1 \(full attention, NoPE\), head 0/);

    const fig = attentionHeatmapPlotly(trace, { layer: 0, head: 1 });
    expect(plotlyErrors(fig)).toEqual([]);
    expect((fig.data[0].z as (number | null)[][])[4]).toEqual([null, null, null, 1, 0, null, null]);
    const shapes = fig.layout.shapes as Row[];
    expect(shapes.filter((s) => s.type === "line").map((s) => [s.x0, s.y0])).toEqual([[2.5, -0.5], [-0.5, 2.5], [5.5, -0.5], [-0.5, 5.5]]);
    expect(shapes.filter((s) => s.type === "rect").map((s) => [s.x0, s.x1, s.y0, s.y1])).toEqual([[-0.5, 2.5, 2.5, 5.5], [-0.5, 5.5, 5.5, 6.5]]);
    expect((fig.data[0].x as string[])[3]).toBe("3: ↵");
    expect(attentionHeatmapPlotly(trace, { layer: 1, head: 1 }).layout.shapes).toEqual([]);
    expect(() => attentionHeatmap(trace, { layer: 2, head: 0 })).toThrow(/no attention recorded for layer 2 head 0/);
  });

  test("head grid: one facet per head, boundary rows per head only on chunked layers", () => {
    const grid = attentionHeadGrid(trace, { layer: 0 });
    expectCompiles(grid);
    const rows = values(grid);
    expect([...new Set(rows.map((r) => r.head))]).toEqual([0, 1]);
    expect(rows.filter((r) => r.kind === "boundary").map((r) => [r.head, r.pos])).toEqual([[0, 3], [0, 6], [1, 3], [1, 6]]);
    expect(rows.filter((r) => r.kind === "mask").map((r) => [r.head, r.q0, r.k1])).toEqual([[0, 3, 3], [0, 6, 6], [1, 3, 3], [1, 6, 6]]);
    expect(rows.filter((r) => r.kind === "cell")).toHaveLength(2 * 13);
    expect(cell(rows, { kind: "cell", head: 1, q: 5, k: 3 }).p).toBe(1);
    const fullGrid = attentionHeadGrid(trace, { layer: 1, columns: 2 });
    expectCompiles(fullGrid);
    expect(values(fullGrid).filter((r) => r.kind !== "cell")).toEqual([]);
    expect(fullGrid.columns).toBe(2);
  });

  test("notebooks/11's chunked-attention figure spans several chunks: blocks on the diagonal, boundaries drawn", async () => {
    // The notebook's own prompt (its `const text = ...` line), traced on the embedded model as the notebook does.
    const nb = JSON.parse(readFileSync(join(ROOT_DIR, "notebooks", "11-attention-maps.ipynb"), "utf8")) as { cells: { source: string[] }[] };
    const line = nb.cells.flatMap((c) => c.source.join("").split("\n")).find((l) => /^const text = /.test(l))!;
    const text = new Function(`return ${line.replace(/^const text = /, "").replace(/;$/, "")}`)() as string;
    const model_id = default_model();
    const tokenizer = await AutoTokenizer.from_pretrained(model_id);
    const model = await Llama4ForCausalLM.from_pretrained(model_id, { attn_implementation: "eager" });
    const chunk = model.text_config.attention_chunk_size!;
    const chunkedLayer = model.text_config.layer_types.indexOf("chunked_attention");
    const traced = await model.trace({ input_ids: [tokenizer.encode(text)], tokenizer: tokenizer, attention_layers: [chunkedLayer] });
    const n = traced.tokens.length;
    expect(n).toBeGreaterThanOrEqual(3 * chunk);
    const spec = attentionHeatmap(traced, { layer: chunkedLayer, head: 0 });
    const layers = spec.layer as { name?: string; data?: { values: Row[] } }[];
    const bounds = layers.find((l) => l.name === "chunk_boundaries")!.data!.values.map((r) => r.pos);
    expect(bounds).toEqual(chunkBoundaries(n, chunk));
    expect(bounds.slice(0, 3)).toEqual([chunk, 2 * chunk, 3 * chunk]);
    expect(layers.find((l) => l.name === "masked")!.data!.values.length).toBe(Math.ceil(n / chunk) - 1);
    // Every drawn cell lies in its query's chunk, and each chunk's first query attends to itself alone.
    const cells = (spec.layer as { data?: { values: Row[] } }[])[0].data!.values as { q: number; k: number; p: number }[];
    expect(cells.length).toBeGreaterThan(0);
    expect(cells.filter((c) => Math.floor(c.q / chunk) !== Math.floor(c.k / chunk))).toEqual([]);
    for (const start of bounds) expect(cells.find((c) => c.q === start && c.k === start)!.p).toBeCloseTo(1, 6);
  }, 120_000);
});

describe("attention onto image patches", () => {
  // A prompt with one image of 1x2 tiles of 4 tokens (2x2) plus the global tile, one text token and
  // two generated tokens. Ids: 10 <|image_start|>, 20 <|patch|>, 11/12 tile separators, 13 <|image|>, 14 <|image_end|>.
  const ids = [1, 10, 20, 20, 20, 20, 11, 20, 20, 20, 20, 12, 13, 20, 20, 20, 20, 14, 5, 6, 7];
  const patchPositions = [2, 3, 4, 5, 7, 8, 9, 10, 13, 14, 15, 16];
  // Heads 0 and 1 of layer 1 (full attention): generated queries 19 and 20 give key p the weight p/100 (head 0), p/200 (head 1).
  const probs = (head: number) => ids.map((_, q) =>
    Array.from({ length: q + 1 }, (_, k) => (q >= 19 && patchPositions.includes(k) ? k / (head === 0 ? 100 : 200) : 0)));
  const imageTrace: GenerationTraceData = {
    ...trace,
    tokens: ids.map((id, i) => ({ id, text: `#${id}`, is_prompt: i < 19 })),
    attention: [{ layer: 1, head: 0, probs: probs(0) }, { layer: 1, head: 1, probs: probs(1) }, { layer: 0, head: 0, probs: probs(0).map((r) => r.map(() => 0)) }],
  };
  // A 200x100 image in 56-pixel tiles: resized to 112x56, two tiles across.
  const layout: ImagePatchLayout = {
    image_width: 200, image_height: 100, tile_size: 56, aspect_ratio: [1, 2], resized_width: 112, resized_height: 56,
    tokens_per_tile: 4, image_start_id: 10, patch_id: 20,
  };
  const mean = (p: number) => (p / 100 + p / 200) / 2;

  test("tile and global grids hold the mean attention of the generated tokens, laid out like the image", () => {
    const data = imageAttentionData(imageTrace, { layer: 1, layout });
    expect(data.queries).toEqual([19, 20]);
    expect(data.positions).toEqual(patchPositions);
    // tile 0 = positions 2..5 (2x2, row-major), tile 1 = 7..10 to its right; the global tile 13..16
    const close = (got: number[][] | null, want: number[][]) => {
      expect(got!.map((r) => r.length)).toEqual(want.map((r) => r.length));
      got!.flat().forEach((v, i) => expect(v).toBeCloseTo(want.flat()[i], 12));
    };
    close(data.tiles, [[mean(2), mean(3), mean(7), mean(8)], [mean(4), mean(5), mean(9), mean(10)]]);
    close(data.global, [[mean(13), mean(14)], [mean(15), mean(16)]]);
    const head1 = imageAttentionData(imageTrace, { layer: 1, layout, head: 1, queries: [19] });
    close(head1.global, [[13 / 200, 14 / 200], [15 / 200, 16 / 200]]);
  });

  test("drawn over the image: cells sized in image pixels, a valid Plotly figure", async () => {
    const image = new RawImage(new Uint8Array(200 * 100 * 3).fill(128), 200, 100);
    const fig = await imageAttention(imageTrace, { layer: 1, layout, image });
    expect(plotlyErrors(fig)).toEqual([]);
    expect(fig.data.map((d) => [d.dx, d.dy])).toEqual([[50, 50], [100, 50]]); // 28px tile cells scaled by 200/112 and 100/56
    const images = fig.layout.images as Row[];
    expect(images).toHaveLength(2);
    expect(String(images[0].source)).toMatch(/^data:image\/png;base64,/);
    expect(images.map((i) => [i.sizex, i.sizey])).toEqual([[200, 100], [200, 100]]);
  });

  test("static fallback of a placed heatmap: only images on its axes are drawn, above the cells when asked", () => {
    const fig = (images: Row[]) => ({
      data: [{ type: "heatmap", z: [[1, 2], [3, 4]], x0: 5, dx: 10, y0: 5, dy: 10 }],
      layout: { images, xaxis: { range: [0, 20] }, yaxis: { range: [20, 0] } },
    });
    const source = "data:image/png;base64,AAAA";
    const marks = (f: ReturnType<typeof fig>) => (plotlyStaticSpec(f) as unknown as { layer: { mark: { type: string } }[] }).layer.map((l) => l.mark.type);
    expect(marks(fig([{ source, x: 0, y: 0, sizex: 20, sizey: 20 }]))).toEqual(["rect"]); // Plotly's default: the paper
    expect(marks(fig([{ source, xref: "x", yref: "y", x: 0, y: 0, sizex: 20, sizey: 20 }]))).toEqual(["rect", "image"]); // default "above"
    expect(marks(fig([{ source, xref: "x", yref: "y", x: 0, y: 0, sizex: 20, sizey: 20, layer: "below" }]))).toEqual(["image", "rect"]);
  });

  test("the static fallback (PNG for GitHub / nbviewer) draws the picture under the cells, top side up", async () => {
    // top half red, bottom half blue
    const pixels = new Uint8Array(200 * 100 * 3);
    for (let i = 0; i < 200 * 100; i++) pixels.set(i < 200 * 50 ? [255, 0, 0] : [0, 0, 255], i * 3);
    const fig = await imageAttention(imageTrace, { layer: 1, layout, image: new RawImage(pixels, 200, 100) });
    const spec = plotlyStaticSpec(fig) as unknown as { hconcat: { layer: { mark: { type: string }; data: { values: Row[] }; encoding: { y: { scale: { domain: number[] } } } }[] }[] };
    const [picture, cells] = spec.hconcat[0].layer;
    expect(picture.mark.type).toBe("image");
    expect(picture.data.values).toEqual([{ x: 0, x2: 200, y: 0, y2: 100, url: (fig.layout.images as Row[])[0].source }]);
    expect(cells.encoding.y.scale.domain).toEqual([100, 0]); // y grows downwards, as in the picture
    // the first tile's top-left cell (position 2) covers image pixels x 0..50, y 0..50
    expect(cells.data.values[0]).toMatchObject({ x: 0, x2: 50, y: 0, y2: 50 });
    const png = await sharp(await svgToPNG(await toSVG(fig), 1)).raw().toBuffer({ resolveWithObject: true });
    const band = (from: number, to: number) => {
      const sum = [0, 0, 0];
      let n = 0;
      const { width, height, channels } = png.info;
      for (let y = Math.floor(height * from); y < height * to; y++) {
        for (let x = Math.floor(width * 0.05); x < width * 0.4; x++, n++) for (let c = 0; c < 3; c++) sum[c] += png.data[(y * width + x) * channels + c];
      }
      return sum.map((v) => v / n);
    };
    const [top, bottom] = [band(0.25, 0.45), band(0.65, 0.85)];
    expect(top[0]).toBeGreaterThan(bottom[0] + 60);
    expect(bottom[2]).toBeGreaterThan(top[2] + 60);
  });

  test("errors name what is wrong", async () => {
    expect(() => imageAttentionData(imageTrace, { layer: 1, layout: { ...layout, aspect_ratio: [2, 2] } })).toThrow(
      /image 0 has 12 patch tokens in the trace, but its layout \(2x2 tiles of 4\) needs 20/,
    );
    expect(() => imageAttentionData(imageTrace, { layer: 1, layout, image_index: 1 })).toThrow(/image_index 1 does not exist: the trace has 1 image/);
    expect(() => imageAttentionData(imageTrace, { layer: 3, layout })).toThrow(/no attention recorded for layer 3/);
    expect(() => imageAttentionData(imageTrace, { layer: 0, layout })).toThrow(
      /layer 0 is a chunked-attention layer \(chunk 3\) and query 19 does not see all of image 0 \(positions 2\.\.16\)/,
    );
    expect(() => imageAttentionData(imageTrace, { layer: 1, layout, queries: [] })).toThrow(/queries is empty/);
    // a 2x1 layout has as many patches as the 1x2 image; its tile separators give it away
    const withSeparators = { ...layout, tile_x_separator_id: 11, tile_y_separator_id: 12 };
    expect(imageAttentionData(imageTrace, { layer: 1, layout: withSeparators }).tiles).toHaveLength(2);
    expect(() => imageAttentionData(imageTrace, { layer: 1, layout: { ...withSeparators, aspect_ratio: [2, 1] } })).toThrow(
      /12 patch tokens and 1\/1 tile x\/y separators in the trace, but its layout \(2x1 tiles of 4\) needs 12 and 0\/2/,
    );
    expect(() => imageAttentionData(imageTrace, { layer: 1, layout, queries: [10] })).toThrow(/query 10 must be a recorded position after the image/);
    const image = new RawImage(new Uint8Array(10 * 10 * 3), 10, 10);
    await expect(imageAttention(imageTrace, { layer: 1, layout, image })).rejects.toThrow(/the image is 10x10 but the layout is for 200x100/);
  });
});

describe("memory from a trace", () => {
  test("weights by module x dtype, KV cache per layer over steps, peaks", () => {
    const w = weightMemoryChart(trace);
    expectCompiles(w);
    expect(values(w)).toEqual([
      { module: "embed_tokens", dtype: "float32", bytes: 1000000, size: 1 },
      { module: "attention", dtype: "float32", bytes: 2000000, size: 2 },
      { module: "experts", dtype: "bfloat16", bytes: 3250000, size: 3.25 },
      { module: "experts", dtype: "float32", bytes: 500000, size: 0.5 },
    ]);
    expect((w.encoding as Row).y).toMatchObject({ title: "MB" });

    for (const mark of ["area", "heatmap"] as const) {
      const kv = kvCacheChart(trace, { mark });
      expectCompiles(kv);
      expect(values(kv)).toHaveLength(12);
      expect(cell(values(kv), { step: 2, layer: 1 }).bytes).toBe(3500);
    }
    const peak = peakMemoryChart(trace.memory!);
    expectCompiles(peak);
    const rows = values(peak);
    expect(rows.filter((r) => r.series === "KV cache").map((r) => r.bytes)).toEqual([8000, 9000, 8000]);
    expect(rows.filter((r) => r.series === "scratch peak").map((r) => r.bytes)).toEqual([40000, 8000, 8000]);
    expect(cell(rows, { series: "RSS", step: 2 }).size).toBe(9.15);
    expect(() => weightMemoryChart({ ...trace, memory: null })).toThrow(/no memory record/);
  });
});

describe("a sweep of prompt lengths (notebooks/03-long-context, bench/long_context.mjs)", () => {
  const sweep = [
    { length: 2048, prefill_s: 0.5, decode_tok_s: 100, kv_cache_bytes: 3_000_000, kv_chunked_bytes: 1_000_000, scratch_peak_bytes: 20_000_000, rss_bytes: 150_000_000 },
    { length: 1024, prefill_s: 0.2, decode_tok_s: 125, kv_cache_bytes: 2_000_000, kv_chunked_bytes: 1_000_000, scratch_peak_bytes: 20_000_000, rss_bytes: 140_000_000 },
  ];

  test("time: prefill seconds and decode seconds per token by length, log2 x, log y", async () => {
    expect(longContextTimeData(sweep)).toEqual([
      { length: 1024, series: "prefill (whole prompt)", seconds: 0.2, tok_s: 5120 },
      { length: 1024, series: "decode (per token)", seconds: 0.008, tok_s: 125 },
      { length: 2048, series: "prefill (whole prompt)", seconds: 0.5, tok_s: 4096 },
      { length: 2048, series: "decode (per token)", seconds: 0.01, tok_s: 100 },
    ]);
    const spec = longContextTimeChart(sweep);
    expectCompiles(spec);
    const enc = spec.encoding as Record<string, Row>;
    expect(enc.x.scale).toMatchObject({ type: "log", base: 2, domain: [1024 / 2 ** 0.25, 2048 * 2 ** 0.25] });
    expect((enc.x.axis as Row).values).toEqual([1024, 2048]);
    expect(enc.y.scale).toEqual({ type: "log" });
    expect((await toSVG(spec)).startsWith("<svg")).toBe(true);
  });

  test("memory: KV total and by layer kind, working memory, RSS; a bench row gives its peak RSS", async () => {
    const { unit, rows } = longContextMemoryData(sweep);
    expect(unit).toBe("MB");
    expect(rows.filter((r) => r.length === 2048)).toEqual([
      { length: 2048, series: "KV cache", bytes: 3_000_000, size: 3 },
      { length: 2048, series: "KV: chunked layers", bytes: 1_000_000, size: 1 },
      { length: 2048, series: "KV: full-attention layers", bytes: 2_000_000, size: 2 },
      { length: 2048, series: "working memory (peak)", bytes: 20_000_000, size: 20 },
      { length: 2048, series: "RSS", bytes: 150_000_000, size: 150 },
    ]);
    const spec = longContextMemoryChart(sweep);
    expectCompiles(spec);
    expect(values(spec)).toHaveLength(10);
    expect(((spec.encoding as Record<string, Row>).color.scale as Row).domain).toEqual(
      ["RSS", "KV cache", "KV: full-attention layers", "KV: chunked layers", "working memory (peak)"]);
    expect((await toSVG(spec)).startsWith("<svg")).toBe(true);

    // A row as bench/long_context.mjs prints it (extra fields ignored); zero bytes stay in the data, off the log-scale chart.
    const bench = JSON.parse('[{"length":1024,"prefill_s":0.15,"prefill_tok_s":6826.7,"decode_tok_s":90,"peak_rss_bytes":130000000,' +
      '"weight_bytes":29000000,"kv_cache_bytes":0}]');
    expect(longContextMemoryData(bench).rows.map((r) => [r.series, r.bytes])).toEqual([["KV cache", 0], ["peak RSS", 130000000]]);
    const benchSpec = longContextMemoryChart(bench);
    expectCompiles(benchSpec);
    expect(values(benchSpec).map((r) => r.series)).toEqual(["peak RSS"]);

    expect(() => longContextTimeChart([])).toThrow(/no rows/);
    expect(() => longContextMemoryChart([{ ...sweep[0], length: 1.5 }])).toThrow(/length must be a positive whole number/);
    expect(() => longContextTimeData([{ ...sweep[0], prefill_s: 0 }])).toThrow(/prefill_s at 2048 tokens must be > 0/);
  });
});

describe("memory estimator (config.json only)", () => {
  const scout = estimateMemory(config("llama4-scout-17b-16e.json"), { contextLength: 131072 });
  const maverick = estimateMemory(config("llama4-maverick-17b-128e.json"), { contextLength: 131072 });

  test("Scout: ~109B total, ~17B active; Maverick: ~400B total, ~17B active", () => {
    expect(Math.abs(scout.params.total / 109e9 - 1)).toBeLessThan(0.03);
    expect(Math.abs(scout.params.active / 17e9 - 1)).toBeLessThan(0.03);
    expect(Math.abs(maverick.params.total / 400e9 - 1)).toBeLessThan(0.03);
    expect(Math.abs(maverick.params.active / 17e9 - 1)).toBeLessThan(0.03);
    expect(scout.layers.moe).toHaveLength(48);
    expect(maverick.layers.moe).toEqual(Array.from({ length: 24 }, (_, i) => 2 * i + 1));
    // Parts worked out by hand: routed experts E x 3 x H x I per MoE layer, embeddings V x H.
    const mod = (e: typeof scout, name: string) => e.modules.find((m) => m.module === name)!.params;
    expect(mod(scout, "experts")).toBe(48 * 16 * 3 * 5120 * 8192);
    expect(mod(maverick, "experts")).toBe(24 * 128 * 3 * 5120 * 8192);
    expect(mod(maverick, "mlp")).toBe(24 * 3 * 5120 * 16384);
    expect(mod(scout, "embed_tokens")).toBe(202048 * 5120);
    expect(mod(scout, "attention")).toBe(48 * (2 * 5120 * 40 * 128 + 2 * 5120 * 8 * 128));
    expect(scout.params.vision).toBeGreaterThan(0.8e9);
    expect(scout.params.vision).toBeLessThan(0.95e9);
  });

  test("bytes as llama4-ts holds them: bf16, fp8 (1 byte + f32 row scale), int8 / int4 (1 / 0.5 byte + f16 per 32 inputs)", () => {
    // Scout: 48 layers, all MoE (16 experts of I = 8192), H = 5120, 40 q / 8 kv heads of 128, untied lm_head of 202048 rows.
    // Maverick: 24 MoE layers (128 experts) and 24 dense ones (intermediate_size_mlp 16384), otherwise the same.
    const H = 5120, I = 8192, Imlp = 16384, V = 202048;
    const attention = 48 * (2 * H * 40 * 128 + 2 * H * 8 * 128);
    const attentionRows = 48 * (40 * 128 + 2 * 8 * 128 + H);
    const lmHead = V * H;
    const linears = (e: typeof scout) => {
      const E = e === scout ? 16 : 128, M = e === scout ? 48 : 24, dense = 48 - M;
      const params = attention + (E + 1) * M * 3 * H * I + dense * 3 * H * Imlp;
      const rows = attentionRows + (E + 1) * M * (2 * I + H) + dense * (2 * Imlp + H);
      return { params, rows };
    };
    for (const e of [scout, maverick]) {
      const { params, rows } = linears(e);
      const bf16 = 2 * e.params.total;
      expect(e.weights_bytes.bf16).toBe(bf16);
      for (const m of e.modules) expect(m.bytes.bf16).toBe(2 * m.params);
      // fp8: the Linears at 1 byte + 4 bytes per output row; lm_head, embeddings, routers, norms, vision stay bf16.
      expect(e.weights_bytes.fp8).toBe(bf16 - 2 * params + params + 4 * rows);
      // int8: the Linears and lm_head at 1 byte + 2 bytes per 32 inputs.
      expect(e.weights_bytes.int8).toBe(bf16 - 2 * (params + lmHead) + (params + lmHead) * (1 + 2 / 32));
      // int4: the Linears at 0.5 byte + 2 per 32, lm_head at int8.
      expect(e.weights_bytes.int4).toBe(bf16 - 2 * (params + lmHead) + params * (0.5 + 2 / 32) + lmHead * (1 + 2 / 32));
      expect(e.total_bytes.int4).toBe(e.weights_bytes.int4 + e.kv_cache.bytes);
      for (const name of ["embed_tokens", "router", "norm", "vision", "projector"]) {
        const m = e.modules.find((x) => x.module === name)!;
        expect([m.bytes.fp8, m.bytes.int8, m.bytes.int4], name).toEqual([2 * m.params, 2 * m.params, 2 * m.params]);
      }
    }
    const mod = (e: typeof scout, name: string) => e.modules.find((m) => m.module === name)!.bytes;
    const experts = 48 * 16 * 3 * H * I;
    expect(mod(scout, "experts")).toEqual({
      bf16: 2 * experts,
      fp8: experts + 4 * 48 * 16 * (2 * I + H),
      int8: experts + 2 * (experts / 32),
      int4: experts / 2 + 2 * (experts / 32),
    });
    expect(mod(scout, "lm_head")).toEqual({ bf16: 2 * lmHead, fp8: 2 * lmHead, int8: lmHead + lmHead / 16, int4: lmHead + lmHead / 16 });
    expect(mod(scout, "attention").fp8).toBe(attention + 4 * attentionRows);
    // In GB, as describeEstimate prints them.
    expect(describeEstimate(scout).split("\n").slice(1).map((l) => /: ([\d.]+) GB weights/.exec(l)![1])).toEqual(["217.3", "111.7", "117.2", "64.4"]);
    expect(describeEstimate(maverick).split("\n").slice(1).map((l) => /: ([\d.]+) GB weights/.exec(l)![1])).toEqual(["803.2", "404.8", "428.5", "229.2"]);
  });

  test("the quantized estimates equal the engine's weight_memory() for dtype q8 / q4 and FbgemmFp8Config", async () => {
    // The embedded model (tied lm_head) and a tiny multimodal checkpoint with an untied one. The engine holds norms and
    // the vision tower's biases / norms / embeddings in f32, which the estimate leaves at bf16: those modules are skipped.
    const held = (w: { module: string; bytes: number }[], module: string) => w.filter((x) => x.module === module).reduce((s, x) => s + x.bytes, 0);
    for (const dir of [join(__dirname, "..", "models", "llama4-tiny"), modelDir("tiny-llama4-vision")]) {
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      const e = estimateMemory(cfg);
      const t = (cfg.text_config ?? cfg) as Record<string, number>;
      const quantized = ["attention", "experts", "shared_expert", "mlp", "lm_head"];
      for (const [dtype, format] of [["q8", "int8"], ["q4", "int4"]] as const) {
        const model = await Llama4ForCausalLM.from_pretrained(dir, { dtype });
        const w = model.weight_memory();
        // Unquantized tensors are held as the checkpoint stores them: bf16 (the estimate's 2 bytes) or f32 (twice that).
        const stored = cfg.dtype === "float32" ? 2 : 1;
        for (const m of e.modules.filter((x) => x.module !== "norm" && x.module !== "vision")) {
          const expected = quantized.includes(m.module) ? m.bytes[format] : stored * m.bytes[format];
          expect(held(w, m.module), `${dir} ${dtype} ${m.module}`).toBe(expected);
          if (quantized.includes(m.module)) expect(w.filter((x) => x.module === m.module && x.bytes > 0).map((x) => x.dtype)).toEqual([m.module === "lm_head" ? "q8" : dtype]);
        }
      }
      // FP8: 1 byte per weight and an f32 scale per output row, in both.
      const model = await Llama4ForCausalLM.from_pretrained(dir, { quantization_config: new FbgemmFp8Config() });
      const w = model.weight_memory();
      const H = t.hidden_size, I = t.intermediate_size, E = t.num_local_experts;
      const M = (t.moe_layers as unknown as number[]).length, dense = t.num_hidden_layers - M;
      const rows: Record<string, number> = {
        attention: t.num_hidden_layers * (t.num_attention_heads * t.head_dim + 2 * t.num_key_value_heads * t.head_dim + H),
        experts: M * E * (2 * I + H),
        shared_expert: M * (2 * I + H),
        mlp: dense * (2 * t.intermediate_size_mlp + H),
      };
      for (const module of ["attention", "experts", "shared_expert", "mlp"]) {
        const m = e.modules.find((x) => x.module === module)!;
        expect(m.bytes.fp8, module).toBe(m.params + 4 * rows[module]);
        expect(held(w, module), `${dir} fp8 ${module}`).toBe(m.bytes.fp8);
      }
      expect(w.find((x) => x.module === "lm_head")?.dtype ?? "tied").not.toBe("F8_E4M3");
    }
  });

  test("the parameter count equals the tensors of the tiny checkpoints (safetensors headers)", () => {
    for (const name of ["tiny-llama4-f32", "tiny-llama4-conditional", "tiny-llama4-instruct", "tiny-llama4-bf16-sharded"]) {
      const dir = modelDir(name);
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
      expect(estimateMemory(cfg).params.total, name).toBe(checkpointParams(dir));
    }
  });

  test("KV cache: 2 x layers x kv_heads x head_dim x bytes per token, chunked layers capped at the chunk", () => {
    const small = {
      model_type: "llama4_text", vocab_size: 100, hidden_size: 32, num_hidden_layers: 4, num_attention_heads: 4,
      num_key_value_heads: 2, head_dim: 8, num_local_experts: 2, num_experts_per_tok: 1, intermediate_size: 16,
      intermediate_size_mlp: 32, interleave_moe_layer_step: 2, attention_chunk_size: 16, no_rope_layer_interval: 2,
    };
    // Layers 0, 2 chunked (RoPE), 1, 3 full (NoPE). 2 x 2 heads x 8 dims x 2 bytes = 64 bytes per token per layer.
    const e = estimateMemory(small, { contextLength: 100 });
    expect(e.kv_cache.bytes_per_token_per_layer).toBe(64);
    expect([e.kv_cache.chunked_layers, e.kv_cache.full_layers]).toEqual([2, 2]);
    expect(e.kv_cache.bytes).toBe(2 * 100 * 64 + 2 * 16 * 64);
    expect(estimateMemory(small, { contextLength: 10, kvDtype: "fp8" }).kv_cache.bytes).toBe(4 * 10 * 32);
    // int8 as the engine holds it: 1 byte per element and an f32 scale per head_dim (8) elements.
    expect(estimateMemory(small, { contextLength: 10, kvDtype: "int8" }).kv_cache.bytes).toBe(4 * 10 * 32 * (1 + 4 / 8));
    expect(estimateMemory(small, { contextLength: 100, batchSize: 3, kvDtype: "float32" }).kv_cache.bytes).toBe(3 * (2 * 100 * 128 + 2 * 16 * 128));
    expect(estimateMemory({ ...small, attention_chunk_size: null }, { contextLength: 100 }).kv_cache.bytes).toBe(4 * 100 * 64);
    // Scout at 128k, bf16: 12 NoPE layers hold 131072 positions, 36 chunked layers 8192; 2 x 8 x 128 x 2 = 4096 bytes each.
    expect(scout.kv_cache.bytes).toBe(4096 * (12 * 131072 + 36 * 8192));
    // Parameters of the small config by hand: embed 3200, attention 4 x (2x32x32 + 2x32x16) = 12288,
    // MoE layers 1, 3: router 2x32, experts 2x3x32x16, shared 3x32x16; dense 0, 2: 3x32x32; norms 9x32; lm_head 3200.
    expect(e.params.total).toBe(3200 + 12288 + 2 * (64 + 3072 + 1536) + 2 * 3072 + 288 + 3200);
    expect(e.params.active).toBe(3200 + 12288 + 2 * (64 + 1536 + 1536) + 2 * 3072 + 288 + 3200);
    expect(() => estimateMemory({ hidden_size: 8 })).toThrow(/"vocab_size" is missing/);
  });

  test("the KV cache estimate is the engine's cache, byte for byte, for each kv_cache_dtype", async () => {
    const dir = modelDir("tiny-llama4-f32");  // chunks of 8: its chunked layers hold 8 positions
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    for (const dtype of ["float32", "bfloat16", "int8"] as const) {
      const model = await Llama4ForCausalLM.from_pretrained(dir, { kv_cache_dtype: dtype });
      const cache = model.new_cache(1);
      await model.forward({ input_ids: [Array.from({ length: 100 }, (_, i) => 3 + i)], cache });
      const held = cache.native.layerBytes().reduce((s: number, b: number) => s + b, 0);
      expect(held, dtype).toBe(estimateMemory(config, { contextLength: 100, kvDtype: dtype }).kv_cache.bytes);
    }
  });

  test("chart of estimates for a list of configs", () => {
    const spec = estimateChart([scout, maverick]);
    expectCompiles(spec);
    const rows = estimateChartData([scout, maverick]);
    for (const e of [scout, maverick]) {
      for (const d of ["bf16", "fp8", "int8", "int4"] as const) {
        const sum = rows.filter((r) => r.config === e.name && r.dtype === d).reduce((s, r) => s + r.bytes, 0);
        expect(sum).toBe(e.total_bytes[d]);
      }
    }
    expect(values(spec)).toEqual(rows);
    expect(describeEstimate(scout)).toMatch(/^meta-llama\/Llama-4-Scout-17B-16E: 108\.6B parameters \(17\.2B active/);
  });
});

describe("static render and display bundles", () => {
  test("PNG of the load heatmap: expected size, the viridis colours of the cells, text drawn", async () => {
    const spec = routingHeatmap(trace);
    const svg = await toSVG(spec);
    const w = Number(/width="(\d+(?:\.\d+)?)"/.exec(svg)![1]);
    const h = Number(/height="(\d+(?:\.\d+)?)"/.exec(svg)![1]);
    const png = await toPNG(spec, { scale: 2 });
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([Math.ceil(w * 2), Math.ceil(h * 2)]);
    const colours = new Map<number, number>();
    for (let i = 0; i < data.length; i += 3) {
      const c = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      colours.set(c, (colours.get(c) ?? 0) + 1);
    }
    const solid = [...colours.values()].filter((n) => n >= 100).length;
    expect(solid).toBeGreaterThanOrEqual(6);
    // The busiest cell (layer 3, expert 2: 6 tokens = the domain's max) is viridis' last colour #fde725:
    // a 22 x 16 cell at scale 2, less its antialiased edges.
    expect(colours.get(0xfde725) ?? 0).toBeGreaterThan(20 * 14 * 4 * 0.8);
    // Text (title, axis labels) is drawn: dark pixels in the top title band.
    let dark = 0;
    for (let y = 0; y < 20 * 2; y++) {
      for (let x = 0; x < info.width; x++) {
        const i = (y * info.width + x) * 3;
        if (data[i] + data[i + 1] + data[i + 2] < 200) dark++;
      }
    }
    expect(dark).toBeGreaterThan(200);
  });

  test("Vega-Lite bundle: the spec and a PNG, no text/html (JupyterLab would prefer it to the chart)", async () => {
    const spec = routingHeatmap(trace);
    const bundle = await mimeBundle(spec);
    expect(bundle[VEGALITE_MIME]).toBe(spec);
    expect(bundle["text/plain"]).toBe("<Vega-Lite chart: Expert load per MoE layer (top-2) — hand-made>");
    expect(bundle["text/html"]).toBeUndefined();
    const withHtml = await mimeBundle(spec, { html: true, png: false });
    expect(withHtml["text/html"]).toMatch(/^<div class="llama4-viz"[^>]*><svg /);
    expect(withHtml["text/html"]).not.toMatch(/<script/);
    const png = Buffer.from(bundle["image/png"] as string, "base64");
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(Object.keys(await mimeBundle(spec, { png: false, html: false }))).toEqual([VEGALITE_MIME, "text/plain"]);
  });

  test("Plotly bundle: {data, layout, config}, responsive, no PNG; heatmaps get an SVG fallback with the same z, a Sankey a table", async () => {
    const fig = routingHeatmapPlotly(trace);
    const fallback = plotlyStaticSpec(fig);
    expectCompiles(fallback);
    expect(values(fallback).map((r) => r.z)).toEqual([5, 4, 2, 3, 3, 2, 6, 3]);
    const bundle = await mimeBundle(fig);
    expect(bundle[PLOTLY_MIME]).toEqual({ data: fig.data, layout: { autosize: true, ...fig.layout }, config: { responsive: true } });
    expect(bundle["text/html"]).toMatch(/<svg /);
    // jupyterlab-plotly would show a PNG instead of the plot until hovered (see test/browser.test.ts).
    expect(bundle["image/png"]).toBeUndefined();
    expect(typeof (await mimeBundle(fig, { png: true }))["image/png"]).toBe("string");
    expectCompiles(plotlyStaticSpec(tokenExpertMapPlotly(trace)));
    expectCompiles(plotlyStaticSpec(routingHeatmapPlotly(trace, { split: true })));
    const att = plotlyStaticSpec(attentionHeatmapPlotly(trace, { layer: 0, head: 0 }));
    expectCompiles(att);
    expect(values(att)).toHaveLength(13); // masked and future keys are gaps
    expect(exprLabels(((att.encoding as Row).x as { axis: { labelExpr: string } }).axis.labelExpr)[3]).toBe("↵");

    const sankey = await mimeBundle(transitionSankey(trace));
    expect(sankey["image/png"]).toBeUndefined();
    expect((sankey["text/html"] as string).match(/<tr><td>/g)).toHaveLength(5);
    expect(() => plotlyStaticSpec(transitionSankey(trace))).toThrow(/no static rendering for Plotly "sankey"/);
  });

  test("token texts with quotes, backslashes, markup, emoji and U+2028 survive into the labels", async () => {
    const odd = ['"q"', "a\\b", "it's", "<b>", "😀", "\u2028x", "é"];
    const t: GenerationTraceData = { ...trace, tokens: trace.tokens.map((tok, i) => ({ ...tok, text: odd[i] })) };
    for (const spec of [tokenExpertMap(t), routingEntropy(t), attentionHeatmap(t, { layer: 1, head: 0 }), textByExpert(t, { layer: 1 })]) {
      expectCompiles(spec);
      const svg = await toSVG(spec);
      expect(svg).toContain("&lt;b&gt;");
      expect(svg).toContain("😀");
    }
  });

  test("every Vega-Lite spec renders to SVG headlessly", async () => {
    const specs = [
      routingHeatmap(trace, { split: true }), tokenExpertMap(trace), textByExpert(trace, { layer: 1 }), routingEntropy(trace),
      routingEntropy(trace, { mode: "per_layer" }), transitionHeatmap(trace), compareRouting(trace, trace, { mode: "difference" }),
      attentionHeatmap(trace, { layer: 0, head: 1 }), attentionHeadGrid(trace, { layer: 0 }), weightMemoryChart(trace),
      kvCacheChart(trace), peakMemoryChart(trace), estimateChart([estimateMemory(config("llama4-scout-17b-16e.json"))]),
    ];
    for (const spec of specs) {
      const svg = await toSVG(spec);
      expect(svg.startsWith("<svg")).toBe(true);
      expect(svg.length).toBeGreaterThan(1000);
    }
  });

  test("every chart fits an 840-px output area: single views span 720 px, grids wrap, small heatmaps grow", async () => {
    const width = async (spec: object) => Number(/width="(\d+(?:\.\d+)?)"/.exec(await toSVG(spec as never))![1]);
    // Maverick-sized routing (128 experts) and 8 heads over 48 tokens, as the notebooks' largest.
    const wide: GenerationTraceData = { ...trace, model: { ...trace.model, num_local_experts: 128 } };
    const heads = { ...trace, attention: Array.from({ length: 8 }, (_, head) => ({ ...trace.attention[0], head })) };
    const specs: [string, object][] = [
      ["routingHeatmap", routingHeatmap(trace)], ["routingHeatmap split", routingHeatmap(trace, { split: true })],
      ["routingHeatmap 128 experts", routingHeatmap(wide, { split: true })], ["tokenExpertMap", tokenExpertMap(trace)],
      ["routingEntropy", routingEntropy(trace)], ["routingEntropy per_layer", routingEntropy(trace, { mode: "per_layer" })],
      ["transitionHeatmap", transitionHeatmap(trace)], ["compareRouting", compareRouting(trace, trace)],
      ["compareRouting 128 experts", compareRouting(wide, wide)], ["attentionHeatmap", attentionHeatmap(trace, { layer: 0, head: 1 })],
      ["attentionHeadGrid 8 heads", attentionHeadGrid(heads, { layer: 0 })],
    ];
    const measured = await Promise.all(specs.map(async ([name, spec]) => [name, await width(spec)] as const));
    for (const [name, w] of measured) expect(w, name).toBeLessThanOrEqual(840);
    // Single views are FIT_WIDTH wide in all (labels and legend inside), so even 4 experts are not tiny.
    for (const spec of [routingHeatmap(trace), tokenExpertMap(trace), routingEntropy(trace), compareRouting(trace, trace, { mode: "difference" })]) {
      expect((spec as Row).width).toBe(FIT_WIDTH);
      expect((spec as Row).autosize).toEqual({ type: "fit-x", contains: "padding" });
      expect(await width(spec)).toBe(FIT_WIDTH);
    }
    // The split heatmap: bands of fitStep's size, over the old fixed 22 px for few experts, 2 px for 128.
    expect(trace.model.num_local_experts).toBe(4);
    expect(((routingHeatmap(trace, { split: true }) as Row).width as { step: number }).step).toBe(40);
    expect([fitStep(8, 2), fitStep(16, 2), fitStep(128, 2)]).toEqual([32, 16, 2]);
    // Eight heads wrap into two rows of four.
    expect((attentionHeadGrid(heads, { layer: 0 }) as Row).columns).toBe(4);
  });
});
