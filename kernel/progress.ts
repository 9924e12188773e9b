// Progress shown in place in a notebook cell: one output, rewritten with update_display_data as
// work advances (HTML bar for JupyterLab, a text bar in text/plain for everything else).
//
//   const bar = new ProgressBar({ total: 100, description: "steps" });  bar.update(1); ... bar.close();
//   await Llama4ForCausalLM.from_pretrained(id, { progress_callback: downloadProgress() });
//
// Updates are throttled (default: at most one message per 100 ms, the last state always sent),
// so a fast loop does not flood the notebook with messages.
import type { ProgressInfo } from "../sdk/hub";
import { display, DisplayHandle, escapeHtml, inKernel, type MimeBundle } from "./display";

/** Runs `fn` at most once per `intervalMs`; a request inside the interval is deferred, not lost. */
export class Throttle {
  private last = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly fn: () => void, private readonly intervalMs: number) {}

  request(): void {
    const wait = this.last + this.intervalMs - Date.now();
    if (wait <= 0) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), wait);
      this.timer.unref();
    }
  }

  /** Runs now and drops any deferred run. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.last = Date.now();
    this.fn();
  }

  /** Drops a deferred run without running. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** "1.5 MB"-style sizes (decimal units, as the Hub shows them). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** `42s`, `3m 05s`, `1h 02m`: a time left, to the second under an hour. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${Math.max(0, seconds) < 10 ? Math.max(0, seconds).toFixed(1) : s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function formatCount(n: number, unit: string): string {
  return unit === "B" ? formatBytes(n) : `${n}${unit ? " " + unit : ""}`;
}

/** `[#####-----]` of `width` cells. */
export function textBar(fraction: number, width = 24): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return "[" + "#".repeat(full) + "-".repeat(width - full) + "]";
}

function htmlBar(fraction: number | null): string {
  const value = fraction === null ? "" : ` value="${Math.min(1, Math.max(0, fraction)).toFixed(4)}"`;
  return `<progress max="1"${value} style="width:18em;vertical-align:middle"></progress>`;
}

export interface ProgressBarOptions {
  /** Expected number of steps (or bytes with unit "B"). Unknown: an indeterminate bar. */
  total?: number;
  /** Label in front of the bar. */
  description?: string;
  /** Unit shown after the counts; "B" formats byte counts (kB, MB, ...). Default "it". */
  unit?: string;
  /** Minimum time between two messages. Default 100 ms. */
  min_interval_ms?: number;
}

/** A tqdm-like progress bar that updates one notebook output in place. */
export class ProgressBar {
  n = 0;
  total: number | undefined;
  description: string;
  readonly unit: string;
  private handle: DisplayHandle | null = null;
  private closed = false;
  private readonly started = Date.now();
  private readonly throttle: Throttle;

  constructor(options: ProgressBarOptions = {}) {
    this.total = options.total;
    this.description = options.description ?? "";
    this.unit = options.unit ?? "it";
    this.throttle = new Throttle(() => this.render(), options.min_interval_ms ?? 100);
    this.throttle.flush();
  }

  /** Advances by `delta` steps. */
  update(delta = 1): void {
    this.set(this.n + delta);
  }

  /** Sets the position (and optionally the total). */
  set(n: number, total?: number): void {
    this.n = n;
    if (total !== undefined) this.total = total;
    if (!this.closed) this.throttle.request();
  }

  set_description(description: string): void {
    this.description = description;
    if (!this.closed) this.throttle.request();
  }

  /** Sends the final state. Further updates are ignored. Outside a kernel, prints the final line. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.throttle.cancel();
    if (this.handle) this.handle.update(this.bundle());
    else if (!inKernel()) display({ "text/plain": this.text() });
  }

  /** The bar as text: `description [#####-----] 50% 5/10 it 0.2s, 25.0 it/s, ETA 0.2s`. */
  text(): string {
    const label = this.description ? this.description + " " : "";
    if (this.total === undefined || !(this.total > 0)) return `${label}${formatCount(this.n, this.unit)} ${this.timing()}`;
    const f = this.n / this.total;
    return `${label}${textBar(f)} ${Math.floor(f * 100)}% ${formatCount(this.n, this.unit)}/${formatCount(this.total, this.unit)} ${this.timing()}`;
  }

  /** Elapsed time, the rate so far and, with a total, the time left at that rate: `2.0s, 25.0 it/s, ETA 2.0s`. */
  timing(): string {
    const seconds = (Date.now() - this.started) / 1000;
    if (this.n <= 0 || seconds <= 0) return `${seconds.toFixed(1)}s`;
    const rate = this.n / seconds;
    const rateText = this.unit === "B" ? `${formatBytes(rate)}/s` : `${rate.toFixed(1)} ${this.unit}/s`;
    const left = this.total && this.total > this.n ? `, ETA ${formatDuration((this.total - this.n) / rate)}` : "";
    return `${seconds.toFixed(1)}s, ${rateText}${left}`;
  }

  bundle(): MimeBundle {
    const f = this.total && this.total > 0 ? this.n / this.total : null;
    const counts = this.total && this.total > 0
      ? `${f === null ? "" : Math.floor(f * 100) + "% "}${formatCount(this.n, this.unit)} / ${formatCount(this.total, this.unit)}`
      : formatCount(this.n, this.unit);
    const html = `<div class="llama4-ts-progress" style="font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)">` +
      (this.description ? `<span>${escapeHtml(this.description)}</span> ` : "") +
      htmlBar(f) + ` <span>${escapeHtml(counts)}</span> <span style="opacity:0.7">${escapeHtml(this.timing())}</span></div>`;
    return { "text/plain": this.text(), "text/html": html };
  }

  private render(): void {
    // Outside a kernel nothing is printed until close(): a log does not want every step.
    if (!inKernel()) return;
    if (this.handle) this.handle.update(this.bundle());
    else this.handle = display(this.bundle(), { display_id: true });
  }
}

interface FileState {
  loaded: number;
  total?: number;
  done: boolean;
}

export interface DownloadProgressOptions {
  /** Title above the per-file bars. Default "Downloading". */
  description?: string;
  /** Minimum time between two messages. Default 100 ms. */
  min_interval_ms?: number;
}

/**
 * A `progress_callback` for from_pretrained / pipeline(): one output listing every file being
 * downloaded with its own bar, plus the total, updated in place; then the engine loading the weights
 * ("loading" events: bytes of tensors, rate, ETA). With every file in the cache only the loading shows.
 */
export function downloadProgress(options: DownloadProgressOptions = {}): (info: ProgressInfo) => void {
  const files = new Map<string, FileState>();
  const title = options.description ?? "Downloading";
  let handle: DisplayHandle | null = null;
  let repo: string | undefined;

  let load: { loaded: number; total: number; started: number } | null = null;  // the engine's "loading" reports

  const loadLine = (): string => {
    if (!load) return "";
    const seconds = (performance.now() - load.started) / 1000, rate = seconds > 0 ? load.loaded / seconds : 0;
    const left = rate > 0 && load.loaded < load.total ? `, ETA ${formatDuration((load.total - load.loaded) / rate)}` : "";
    return `Loading weights${repo ? " " + repo : ""}: ${formatBytes(load.loaded)} / ${formatBytes(load.total)} ` +
      `${textBar(load.total > 0 ? load.loaded / load.total : 1)} ${formatDuration(seconds)}, ${formatBytes(rate)}/s${left}`;
  };

  const bundle = (): MimeBundle => {
    if (files.size === 0) {
      const line = loadLine();
      return { "text/plain": line, "text/html": `<div class="llama4-ts-download" style="font-family:var(--jp-code-font-family,monospace)">${escapeHtml(line)}</div>` };
    }
    let loaded = 0;
    let total = 0;
    let known = true;
    for (const f of files.values()) {
      loaded += f.loaded;
      if (f.total === undefined) known = false;
      else total += f.total;
    }
    const doneCount = [...files.values()].filter((f) => f.done).length;
    const head = `${title}${repo ? " " + repo : ""}: ${doneCount}/${files.size} files, ${formatBytes(loaded)}` +
      (known && total > 0 ? ` / ${formatBytes(total)}` : "");
    const lines = [known && total > 0 ? `${head} ${textBar(loaded / total)}` : head];
    const rows: string[] = [];
    for (const [name, f] of files) {
      const frac = f.done ? 1 : f.total ? f.loaded / f.total : null;
      const size = f.total !== undefined ? `${formatBytes(f.loaded)} / ${formatBytes(f.total)}` : formatBytes(f.loaded);
      lines.push(`  ${name} ${frac === null ? "" : textBar(frac, 16) + " "}${size}${f.done ? " done" : ""}`);
      rows.push(`<tr><td style="text-align:left;padding-right:1em">${escapeHtml(name)}</td><td>${htmlBar(frac)}</td>` +
        `<td style="text-align:right;padding-left:1em">${escapeHtml(size)}</td><td>${f.done ? "&#10003;" : ""}</td></tr>`);
    }
    if (load) lines.push(loadLine());
    const html = `<div class="llama4-ts-download" style="font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)">` +
      `<div>${escapeHtml(head)}</div><table style="border-collapse:collapse">${rows.join("")}</table>` +
      (load ? `<div>${escapeHtml(loadLine())}</div>` : "") + `</div>`;
    return { "text/plain": lines.join("\n"), "text/html": html };
  };

  const render = () => {
    if (!inKernel()) return;
    if (handle) handle.update(bundle());
    else handle = display(bundle(), { display_id: true });
  };
  const throttle = new Throttle(render, options.min_interval_ms ?? 100);

  return (info: ProgressInfo) => {
    if (!info || typeof info.file !== "string") return;
    if (info.name) repo = info.name;
    if (info.status === "loading") {
      load ??= { loaded: 0, total: 0, started: performance.now() };
      load.loaded = info.loaded ?? load.loaded;
      load.total = info.total ?? load.total;
      if (load.loaded < load.total) throttle.request();
      else throttle.flush();  // the last layer: drawn at once
      return;
    }
    let f = files.get(info.file);
    if (!f) {
      f = { loaded: 0, done: false };
      files.set(info.file, f);
    }
    if (info.total !== undefined) f.total = info.total;
    if (info.loaded !== undefined) f.loaded = info.loaded;
    if (info.status === "download" && info.resumed_from !== undefined) f.loaded = info.resumed_from;
    if (info.status === "done") {
      f.done = true;
      if (f.total !== undefined) f.loaded = f.total;
    }
    if (info.status === "progress") {
      throttle.request();
    } else {
      throttle.flush();
      // Outside a kernel: one line per finished file.
      if (info.status === "done" && !inKernel()) {
        process.stdout.write(`${title}: ${info.file} ${f.total !== undefined ? formatBytes(f.total) : ""} done\n`);
      }
    }
  };
}
