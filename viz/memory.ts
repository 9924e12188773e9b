// Memory recorded in a trace: weights by module and dtype, the KV cache per layer over the
// generation steps, and the peak working memory / resident set size per step. Sizes are shown in
// decimal units (kB, MB, GB); the exact byte counts are in the data and the tooltips.
import type { GenerationTraceData, TraceMemory } from "../sdk/trace";
import { VEGA_LITE_SCHEMA, VegaLiteSpec, byteUnit, maxOf } from "./common";

function memoryOf(source: GenerationTraceData | TraceMemory): TraceMemory {
  const memory = "version" in source ? source.memory : source;
  if (!memory) throw new Error("the trace has no memory record (trace with memory enabled)");
  return memory;
}

export interface WeightRow {
  module: string;
  dtype: string;
  bytes: number;
  /** bytes in the chart's unit. */
  size: number;
}

export function weightMemoryData(source: GenerationTraceData | TraceMemory): { unit: string; rows: WeightRow[] } {
  const memory = memoryOf(source);
  // Same module and dtype listed twice (e.g. per layer) are summed.
  const sums = new Map<string, { module: string; dtype: string; bytes: number }>();
  for (const w of memory.weights) {
    const key = `${w.module}\u0000${w.dtype}`;
    const s = sums.get(key) ?? { module: w.module, dtype: w.dtype, bytes: 0 };
    s.bytes += w.bytes;
    sums.set(key, s);
  }
  const byModule = new Map<string, number>();
  for (const s of sums.values()) byModule.set(s.module, (byModule.get(s.module) ?? 0) + s.bytes);
  const { unit, divisor } = byteUnit(maxOf(byModule.values(), 0));
  return { unit, rows: [...sums.values()].map((s) => ({ ...s, size: s.bytes / divisor })) };
}

/** Vega-Lite stacked bars: bytes of weights per module, stacked by dtype. */
export function weightMemoryChart(source: GenerationTraceData | TraceMemory, title = "Weights by module and dtype"): VegaLiteSpec {
  const { unit, rows } = weightMemoryData(source);
  const total = rows.reduce((s, r) => s + r.bytes, 0);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: { text: title, subtitle: `total ${(total / byteUnit(total).divisor).toFixed(2)} ${byteUnit(total).unit}` },
    data: { values: rows },
    mark: { type: "bar" },
    width: { step: 36 },
    height: 220,
    encoding: {
      x: { field: "module", type: "nominal", title: "module", sort: "-y", axis: { labelAngle: -30 } },
      y: { aggregate: "sum", field: "size", type: "quantitative", title: unit },
      color: { field: "dtype", type: "nominal", title: "dtype", scale: { scheme: "tableau10" } },
      tooltip: [
        { field: "module", type: "nominal" },
        { field: "dtype", type: "nominal" },
        { field: "bytes", type: "quantitative", title: "bytes", format: "," },
      ],
    },
  };
}

export interface KVRow {
  step: number;
  layer: number;
  bytes: number;
  size: number;
}

export function kvCacheData(source: GenerationTraceData | TraceMemory): { unit: string; rows: KVRow[] } {
  const memory = memoryOf(source);
  const totals = memory.steps.map((s) => s.kv_cache_bytes_by_layer.reduce((a, b) => a + b, 0));
  const { unit, divisor } = byteUnit(maxOf(totals, 0));
  const rows = memory.steps.flatMap((s) => s.kv_cache_bytes_by_layer.map((bytes, layer) => ({ step: s.step, layer, bytes, size: bytes / divisor })));
  return { unit, rows };
}

/**
 * Vega-Lite: KV cache bytes over the generation steps, as an area stacked by layer (default) or
 * as a layer x step heatmap (chunked layers stop growing at the chunk size, NoPE layers do not).
 */
export function kvCacheChart(source: GenerationTraceData | TraceMemory, options: { mark?: "area" | "heatmap" } = {}): VegaLiteSpec {
  const { unit, rows } = kvCacheData(source);
  const tooltip = [
    { field: "step", type: "quantitative" },
    { field: "layer", type: "ordinal" },
    { field: "bytes", type: "quantitative", format: "," },
  ];
  if (options.mark === "heatmap") {
    return {
      $schema: VEGA_LITE_SCHEMA,
      title: "KV cache per layer over generation steps",
      data: { values: rows },
      mark: { type: "rect" },
      width: 360,
      height: { step: 12 },
      encoding: {
        x: { field: "step", type: "ordinal", title: "step (0 = prompt)", axis: { labelOverlap: true } },
        y: { field: "layer", type: "ordinal", title: "layer" },
        color: { field: "size", type: "quantitative", title: unit, scale: { scheme: "blues" } },
        tooltip,
      },
      config: { view: { stroke: null } },
    };
  }
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: "KV cache over generation steps (stacked by layer)",
    data: { values: rows },
    mark: { type: "area", line: false },
    width: 360,
    height: 220,
    encoding: {
      x: { field: "step", type: "quantitative", title: "step (0 = prompt)", axis: stepAxis(rows.map((r) => r.step)) },
      y: { aggregate: "sum", field: "size", type: "quantitative", title: unit, stack: "zero" },
      color: { field: "layer", type: "ordinal", title: "layer", scale: { scheme: "viridis" } },
      tooltip,
    },
  };
}

export interface PeakRow {
  step: number;
  series: "scratch peak" | "RSS" | "KV cache";
  bytes: number;
  size: number;
}

export function peakMemoryData(source: GenerationTraceData | TraceMemory): { unit: string; rows: PeakRow[] } {
  const memory = memoryOf(source);
  const raw: Omit<PeakRow, "size">[] = memory.steps.flatMap((s) => [
    { step: s.step, series: "scratch peak" as const, bytes: s.scratch_peak_bytes },
    { step: s.step, series: "RSS" as const, bytes: s.rss_bytes },
    { step: s.step, series: "KV cache" as const, bytes: s.kv_cache_bytes_by_layer.reduce((a, b) => a + b, 0) },
  ]);
  const { unit, divisor } = byteUnit(maxOf(raw.map((r) => r.bytes), 0));
  return { unit, rows: raw.map((r) => ({ ...r, size: r.bytes / divisor })) };
}

/**
 * Vega-Lite lines over the steps, one row per series with its own y scale (RSS is usually far
 * larger than the scratch peak): scratch (activation) peak, RSS and the KV cache total, in bytes
 * with SI prefixes.
 */
export function peakMemoryChart(source: GenerationTraceData | TraceMemory): VegaLiteSpec {
  const { rows } = peakMemoryData(source);
  const peak = rows.filter((r) => r.series === "RSS").reduce((m, r) => Math.max(m, r.bytes), 0);
  const pu = byteUnit(peak);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: { text: "Memory per step", subtitle: `peak RSS ${(peak / pu.divisor).toFixed(2)} ${pu.unit}` },
    data: { values: rows },
    mark: { type: "line", point: true },
    width: 360,
    height: 90,
    encoding: {
      row: { field: "series", type: "nominal", title: null, sort: ["RSS", "KV cache", "scratch peak"] },
      x: { field: "step", type: "quantitative", title: "step (0 = prompt)", axis: stepAxis(rows.map((r) => r.step)) },
      y: { field: "bytes", type: "quantitative", title: "bytes", axis: { format: "~s", tickCount: 4 }, scale: { zero: true } },
      color: { field: "series", type: "nominal", legend: null, sort: ["RSS", "KV cache", "scratch peak"] },
      tooltip: [
        { field: "series", type: "nominal" },
        { field: "step", type: "quantitative" },
        { field: "bytes", type: "quantitative", format: "," },
      ],
    },
    resolve: { scale: { y: "independent" } },
  };
}

/** Integer ticks for a step axis (every step when there are few). */
function stepAxis(steps: number[]): Record<string, unknown> {
  const unique = [...new Set(steps)].sort((a, b) => a - b);
  return unique.length <= 20 ? { values: unique, format: "d" } : { tickMinStep: 1, format: "d" };
}
