// A sweep of prompt lengths, measured (notebooks/03-long-context, or the rows bench/long_context.mjs prints):
// prefill and decode time, and KV cache / working memory / resident memory, against the prompt length on a
// log2 x axis. Log-log time: a slope of 1 is linear in the length, 2 quadratic.
import { VEGA_LITE_SCHEMA, VegaLiteSpec, byteUnit } from "./common";

/** One prompt length of a sweep. bench/long_context.mjs's rows fit as they are (peak_rss_bytes). */
export interface LongContextRow {
  /** Prompt tokens. */
  length: number;
  /** Seconds to prefill the whole prompt. */
  prefill_s: number;
  /** Tokens per second decoded one at a time after the prompt. */
  decode_tok_s?: number;
  /** KV cache after the prompt, all layers. */
  kv_cache_bytes: number;
  /** Of which the chunked-attention layers (the rest: the full-attention layers). */
  kv_chunked_bytes?: number;
  /** The largest working memory of one forward call (a prefill piece). */
  scratch_peak_bytes?: number;
  /** Resident set size of the process after the prompt. */
  rss_bytes?: number;
  /** Or the process's peak resident set size (what the bench reports). */
  peak_rss_bytes?: number;
}

export interface LongContextTimeRow {
  length: number;
  series: "prefill (whole prompt)" | "decode (per token)";
  seconds: number;
  /** Tokens per second of that phase. */
  tok_s: number;
}

export interface LongContextMemoryRow {
  length: number;
  series: string;
  bytes: number;
  /** bytes in the unit of the largest value. */
  size: number;
}

function checked(rows: LongContextRow[]): LongContextRow[] {
  if (!Array.isArray(rows) || rows.length === 0) throw new Error("long-context chart: no rows (measure at least one prompt length)");
  for (const r of rows) {
    if (!(Number.isInteger(r.length) && r.length > 0)) throw new Error(`long-context chart: length must be a positive whole number of tokens, got ${r.length}`);
    if (!(r.prefill_s > 0)) throw new Error(`long-context chart: prefill_s at ${r.length} tokens must be > 0 seconds, got ${r.prefill_s}`);
    if (!(r.kv_cache_bytes >= 0)) throw new Error(`long-context chart: kv_cache_bytes at ${r.length} tokens must be >= 0, got ${r.kv_cache_bytes}`);
  }
  return [...rows].sort((a, b) => a.length - b.length);
}

/** Prefill seconds per prompt, and decode seconds per token where decode_tok_s is given. */
export function longContextTimeData(rows: LongContextRow[]): LongContextTimeRow[] {
  return checked(rows).flatMap((r) => [
    { length: r.length, series: "prefill (whole prompt)" as const, seconds: r.prefill_s, tok_s: r.length / r.prefill_s },
    ...(r.decode_tok_s && r.decode_tok_s > 0
      ? [{ length: r.length, series: "decode (per token)" as const, seconds: 1 / r.decode_tok_s, tok_s: r.decode_tok_s }]
      : []),
  ]);
}

/** The memory series present in the rows: KV cache (total, and split by layer kind when given), working memory, RSS. */
export function longContextMemoryData(rows: LongContextRow[]): { unit: string; rows: LongContextMemoryRow[] } {
  const raw = checked(rows).flatMap((r) => {
    const out: { length: number; series: string; bytes: number }[] = [{ length: r.length, series: "KV cache", bytes: r.kv_cache_bytes }];
    if (r.kv_chunked_bytes !== undefined) {
      out.push({ length: r.length, series: "KV: chunked layers", bytes: r.kv_chunked_bytes });
      out.push({ length: r.length, series: "KV: full-attention layers", bytes: r.kv_cache_bytes - r.kv_chunked_bytes });
    }
    if (r.scratch_peak_bytes !== undefined) out.push({ length: r.length, series: "working memory (peak)", bytes: r.scratch_peak_bytes });
    if (r.rss_bytes !== undefined) out.push({ length: r.length, series: "RSS", bytes: r.rss_bytes });
    if (r.peak_rss_bytes !== undefined) out.push({ length: r.length, series: "peak RSS", bytes: r.peak_rss_bytes });
    return out;
  });
  let max = 0;
  for (const r of raw) max = Math.max(max, r.bytes);
  const { unit, divisor } = byteUnit(max);
  return { unit, rows: raw.map((r) => ({ ...r, size: r.bytes / divisor })) };
}

const SERIES_ORDER = ["RSS", "peak RSS", "KV cache", "KV: full-attention layers", "KV: chunked layers", "working memory (peak)"];

function lengthAxis(rows: { length: number }[]): Record<string, unknown> {
  const lengths = [...new Set(rows.map((r) => r.length))].sort((a, b) => a - b);
  // A quarter of a doubling of room on both sides, so the first and last points (and their labels) sit inside.
  const margin = 2 ** 0.25;
  return {
    field: "length",
    type: "quantitative",
    title: "prompt tokens",
    scale: { type: "log", base: 2, domain: [lengths[0] / margin, lengths.at(-1)! * margin], nice: false },
    axis: { values: lengths, labelExpr: "datum.value >= 1024 && datum.value % 1024 == 0 ? (datum.value / 1024) + 'k' : format(datum.value, ',')" },
  };
}

/** Vega-Lite, log-log: prefill time of the whole prompt and decode time per token against the prompt length. */
export function longContextTimeChart(rows: LongContextRow[], options: { title?: string; subtitle?: string } = {}): VegaLiteSpec {
  const data = longContextTimeData(rows);
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: { text: options.title ?? "Time against prompt length", subtitle: options.subtitle ?? "log-log: slope 1 = linear, 2 = quadratic" },
    data: { values: data },
    mark: { type: "line", point: true },
    width: 380,
    height: 240,
    encoding: {
      x: lengthAxis(data),
      y: { field: "seconds", type: "quantitative", title: "seconds", scale: { type: "log" }, axis: { format: "~g" } },
      color: { field: "series", type: "nominal", title: null, sort: ["prefill (whole prompt)", "decode (per token)"], legend: { orient: "top-left", labelLimit: 240 } },
      tooltip: [
        { field: "series", type: "nominal" },
        { field: "length", type: "quantitative", title: "prompt tokens", format: "," },
        { field: "seconds", type: "quantitative", format: ".4f" },
        { field: "tok_s", type: "quantitative", title: "tok/s", format: ",.1f" },
      ],
    },
  };
}

/** Vega-Lite, log-log: KV cache (total and by layer kind), working memory and RSS against the prompt length. */
export function longContextMemoryChart(rows: LongContextRow[], options: { title?: string; subtitle?: string } = {}): VegaLiteSpec {
  const { rows: data } = longContextMemoryData(rows);
  // Zero bytes cannot sit on a log scale: those points are left out (the data companion keeps them).
  const shown = data.filter((r) => r.bytes > 0);
  const order = SERIES_ORDER.filter((s) => shown.some((r) => r.series === s));
  return {
    $schema: VEGA_LITE_SCHEMA,
    title: { text: options.title ?? "Memory against prompt length", ...(options.subtitle ? { subtitle: options.subtitle } : {}) },
    data: { values: shown },
    mark: { type: "line", point: true },
    width: 380,
    height: 240,
    encoding: {
      x: lengthAxis(shown),
      y: { field: "bytes", type: "quantitative", title: "bytes", scale: { type: "log" }, axis: { format: "~s" } },
      // One legend: colour and dash share the field and the title.
      color: { field: "series", type: "nominal", title: null, sort: order, scale: { domain: order, scheme: "tableau10" }, legend: { labelLimit: 240 } },
      strokeDash: {
        field: "series",
        type: "nominal",
        title: null,
        sort: order,
        scale: { domain: order, range: order.map((s) => (s.startsWith("KV:") ? [4, 3] : [1, 0])) },
      },
      tooltip: [
        { field: "series", type: "nominal" },
        { field: "length", type: "quantitative", title: "prompt tokens", format: "," },
        { field: "bytes", type: "quantitative", format: "," },
      ],
    },
  };
}
