// Rich output for JupyterLab from a tslab kernel: one display_data message carrying a whole MIME
// bundle, and update_display_data messages that replace it in place.
//
// Why not tslab's own `display`: its `display.raw(mime, value)` sends ONE mime type per message and
// always as a string, but a Jupyter bundle must carry its fallbacks in the same message (the
// frontend picks the richest type it can render; the notebook file keeps them all), and JSON mime
// types (application/json, application/vnd.vegalite.v5+json, application/vnd.plotly.v1+json) must be
// JSON objects, not strings.
//
// How: while a cell runs, tslab keeps the function that writes display messages for that cell in
// its jupyter module (`require("tslab/dist/jupyter").lastWriteDisplayData(content, update)`); it
// signs the message and sends it on IOPub with the cell's request as parent. We call that function
// with our own content `{ data, metadata, transient: { display_id } }`. The llama4-ts kernel
// launcher hands us tslab's module directly; under a plain tslab kernel we find it among the loaded
// modules. Outside a kernel (plain node, tests) display() prints the text/plain entry, if any.

import { createRequire } from "node:module";

/** A Jupyter MIME bundle: mime type -> value. Values: strings, bytes (sent base64), or JSON for `*json` types. */
export type MimeBundle = Record<string, unknown>;

export interface DisplayOptions {
  /**
   * As IPython's display_id: `true` gives the output a new id, a string reuses that id (later
   * updates to it replace this output too). With either, display() returns a DisplayHandle.
   */
  display_id?: string | true;
  /** Per-mime-type metadata, e.g. `{ "image/png": { width: 400 } }`. */
  metadata?: Record<string, unknown>;
}

/** tslab's writer: `update` false sends display_data, true sends update_display_data. */
type WriteDisplayData = (content: DisplayContent, update: boolean) => void;

interface DisplayContent {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

interface TslabJupyterModule {
  lastWriteDisplayData: WriteDisplayData | null;
}

const TSLAB_KEY = Symbol.for("llama4-ts.kernel.tslab-jupyter");

/** Called by the kernel launcher with tslab's jupyter module (the one its ZmqServer uses). */
export function useTslabJupyterModule(mod: TslabJupyterModule): void {
  (globalThis as unknown as Record<symbol, unknown>)[TSLAB_KEY] = mod;
}

function tslabModules(): TslabJupyterModule[] {
  const given = (globalThis as unknown as Record<symbol, TslabJupyterModule | undefined>)[TSLAB_KEY];
  if (given) return [given];
  // A plain tslab kernel: look for tslab's jupyter module among the modules already loaded.
  const cache = createRequire(__filename).cache;
  const found: TslabJupyterModule[] = [];
  for (const [file, mod] of Object.entries(cache)) {
    if (/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file) && mod && mod.exports && "lastWriteDisplayData" in mod.exports) {
      found.push(mod.exports as TslabJupyterModule);
    }
  }
  return found;
}

function writer(): WriteDisplayData | null {
  for (const mod of tslabModules()) if (typeof mod.lastWriteDisplayData === "function") return mod.lastWriteDisplayData;
  return null;
}

/** True when running inside a tslab kernel that is executing (or has executed) a cell. */
export function inKernel(): boolean {
  return writer() !== null;
}

/** JSON mime types are sent as JSON values: application/json and every `...+json` type. */
export function isJsonMimeType(mime: string): boolean {
  return /^application\/(.+\+)?json$/.test(mime);
}

/**
 * Checks and converts a bundle to what goes on the wire: bytes become base64 strings, JSON types
 * stay (or become, when given as a string) JSON values, everything else must be a string.
 */
export function normalizeBundle(bundle: MimeBundle): Record<string, unknown> {
  if (!bundle || typeof bundle !== "object" || Array.isArray(bundle)) throw new TypeError("display: expected a MIME bundle object");
  const out: Record<string, unknown> = {};
  for (const [mime, value] of Object.entries(bundle)) {
    if (value === undefined) continue;
    if (!/^[\w.+-]+\/[\w.+-]+$/.test(mime)) throw new TypeError(`display: "${mime}" is not a mime type`);
    if (isJsonMimeType(mime)) {
      if (typeof value === "string") {
        try {
          out[mime] = JSON.parse(value);
        } catch {
          throw new TypeError(`display: ${mime} must be JSON; got a string that does not parse`);
        }
      } else {
        out[mime] = value;
      }
    } else if (typeof value === "string") {
      out[mime] = value;
    } else if (value instanceof Uint8Array) {
      out[mime] = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
    } else {
      throw new TypeError(`display: ${mime} must be a string or bytes (Uint8Array), got ${value === null ? "null" : typeof value}`);
    }
  }
  if (Object.keys(out).length === 0) throw new TypeError("display: the bundle has no mime types");
  return out;
}

let idCounter = 0;

function newDisplayId(): string {
  idCounter++;
  return `llama4-ts-${process.pid.toString(36)}-${Date.now().toString(36)}-${idCounter.toString(36)}`;
}

function send(bundle: MimeBundle, displayId: string | undefined, metadata: Record<string, unknown> | undefined, update: boolean): boolean {
  const data = normalizeBundle(bundle);
  const write = writer();
  if (!write) return false;
  write({ data, metadata: metadata ?? {}, transient: displayId === undefined ? {} : { display_id: displayId } }, update);
  return true;
}

/** A displayed output that can be replaced in place (IPython's DisplayHandle). */
export class DisplayHandle {
  constructor(readonly display_id: string) {}

  /** Replaces every output shown with this display id (update_display_data). Outside a kernel: does nothing. */
  update(bundle: MimeBundle, options: Pick<DisplayOptions, "metadata"> = {}): void {
    send(bundle, this.display_id, options.metadata, true);
  }

  /** Shows `bundle` as a new output that shares this display id (later updates replace both). */
  display(bundle: MimeBundle, options: Pick<DisplayOptions, "metadata"> = {}): void {
    display(bundle, { ...options, display_id: this.display_id });
  }
}

/**
 * Shows a MIME bundle as one cell output (one display_data message). JupyterLab renders the
 * richest type it has a renderer for; the notebook file keeps every type. As in IPython, it
 * returns nothing (so a trailing `display(...)` prints no value) unless `display_id` is given;
 * then it returns a handle whose update() replaces the output in place.
 *
 * ```ts
 * display({ "application/vnd.vegalite.v5+json": spec, "image/png": png, "text/plain": "heatmap" });
 * const h = display({ "text/plain": "working..." }, { display_id: true });
 * h.update({ "text/plain": "done" });
 * ```
 *
 * Outside a kernel it prints the bundle's text/plain (if any) to stdout.
 */
export function display(bundle: MimeBundle, options: DisplayOptions & { display_id: string | true }): DisplayHandle;
export function display(bundle: MimeBundle, options?: DisplayOptions): DisplayHandle | undefined;
export function display(bundle: MimeBundle, options: DisplayOptions = {}): DisplayHandle | undefined {
  const id = options.display_id === true ? newDisplayId() : options.display_id;
  if (!send(bundle, id, options.metadata, false)) {
    const text = bundle["text/plain"];
    if (typeof text === "string") process.stdout.write(text.endsWith("\n") ? text : text + "\n");
  }
  return id === undefined ? undefined : new DisplayHandle(id);
}

/** Replaces the output(s) shown with `display_id` (IPython's update_display). */
export function updateDisplay(bundle: MimeBundle, options: { display_id: string; metadata?: Record<string, unknown> }): void {
  if (!options || typeof options.display_id !== "string") throw new TypeError("updateDisplay: display_id is required");
  send(bundle, options.display_id, options.metadata, true);
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
