// Jupyter display bundles (mime type -> data) for the specs, built in one place so the kernel
// integration only sends them. JupyterLab shows the richest type it has a renderer for: Vega-Lite
// natively, Plotly with the jupyterlab-plotly extension; without one (and on GitHub / nbviewer,
// which keep every type of the bundle) the static fallback shows: a PNG for Vega-Lite, an inline
// SVG in text/html for Plotly (no script, so it works in untrusted notebooks). Each bundle avoids
// the fallback JupyterLab would show instead of the live chart (checked in chromium by
// test/browser.test.ts): text/html ranks above the Vega renderer, and jupyterlab-plotly draws a
// bundle's image/png until the mouse enters it.
import { PlotlyFigure, VegaLiteSpec, escapeHtml, isPlotlyFigure, isVegaLiteSpec } from "./common";
import { plotlyStaticSpec, svgToPNG, toSVG } from "./render";

export const VEGALITE_MIME = "application/vnd.vegalite.v5+json";
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

export type MimeBundle = Record<string, unknown>;

export interface BundleOptions {
  /**
   * Include an image/png fallback (default: Vega-Lite yes, Plotly no: jupyterlab-plotly shows a
   * bundle's PNG in place of the plot until the mouse enters it, so a Plotly bundle's static
   * fallback is the inline SVG in text/html, which JupyterLab ranks below the plot).
   */
  png?: boolean;
  /** Include the inline-SVG text/html fallback (default: Plotly yes, Vega-Lite no, see above). */
  html?: boolean;
  /** PNG pixels per SVG unit (default 2, or 1 for a chart over 1200 units wide or tall). */
  scale?: number;
  /**
   * Largest SVG (characters) inlined as text/html (default 2,000,000); a larger one is left out
   * and the PNG is the static fallback, so notebooks stay small.
   */
  maxInlineSvg?: number;
}

function specTitle(spec: VegaLiteSpec | PlotlyFigure): string {
  const t = isPlotlyFigure(spec) ? spec.layout?.title : spec.title;
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { text?: unknown }).text === "string") return (t as { text: string }).text;
  return "";
}

function htmlWrap(svg: string): string {
  return `<div class="llama4-viz" style="max-width:100%;overflow:auto">${svg}</div>`;
}

/**
 * The display bundle of a spec: a Vega-Lite spec gives application/vnd.vegalite.v5+json, a Plotly
 * figure application/vnd.plotly.v1+json ({data, layout, config}, responsive); both with text/plain and,
 * where a static rendering exists, image/png (base64) for Vega-Lite or text/html (inline SVG) for
 * Plotly. A Plotly Sankey has no static rendering: its text/html is a table of its links instead.
 */
export async function mimeBundle(spec: VegaLiteSpec | PlotlyFigure, options: BundleOptions = {}): Promise<MimeBundle> {
  const title = specTitle(spec).replace(/<[^>]+>/g, " ");
  const bundle: MimeBundle = {};
  if (isVegaLiteSpec(spec)) {
    bundle[VEGALITE_MIME] = spec;
    bundle["text/plain"] = `<Vega-Lite chart${title ? `: ${title}` : ""}>`;
  } else if (isPlotlyFigure(spec)) {
    // responsive: the plot follows its output area's width when JupyterLab resizes it.
    bundle[PLOTLY_MIME] = { data: spec.data, layout: { autosize: true, ...spec.layout }, config: { responsive: true } };
    bundle["text/plain"] = `<Plotly figure${title ? `: ${title}` : ""}>`;
  } else {
    throw new Error("mimeBundle: expected a Vega-Lite spec or a Plotly figure {data, layout}");
  }
  const html = options.html ?? !isVegaLiteSpec(spec);
  const png = options.png ?? isVegaLiteSpec(spec);
  if (!html && !png) return bundle;

  let svg: string | null = null;
  if (isVegaLiteSpec(spec)) {
    svg = await toSVG(spec);
  } else {
    let staticSpec: VegaLiteSpec | null = null;
    try {
      staticSpec = plotlyStaticSpec(spec);
    } catch {
      staticSpec = null;
    }
    if (staticSpec) svg = await toSVG(staticSpec);
    else if (html) bundle["text/html"] = plotlyTableFallback(spec, title);
  }
  if (svg !== null) {
    if (html && svg.length <= (options.maxInlineSvg ?? 2_000_000)) bundle["text/html"] = htmlWrap(svg);
    if (png) bundle["image/png"] = (await svgToPNG(svg, options.scale ?? defaultScale(svg))).toString("base64");
  }
  return bundle;
}

/** 2 pixels per SVG unit (sharp on high-DPI screens), 1 for charts already over 1200 units wide or tall. */
function defaultScale(svg: string): number {
  const w = Number(/width="([\d.]+)"/.exec(svg)?.[1] ?? 0);
  const h = Number(/height="([\d.]+)"/.exec(svg)?.[1] ?? 0);
  return Math.max(w, h) > 1200 ? 1 : 2;
}

/** A bundle for an HTML fragment (e.g. textByExpertHTML), with a plain-text fallback. */
export function htmlBundle(html: string, plain = "<HTML output>"): MimeBundle {
  return { "text/html": html, "text/plain": plain };
}

/** text/html for a figure without static rendering: its Sankey links as a table, or a note. */
function plotlyTableFallback(fig: PlotlyFigure, title: string): string {
  const sankey = fig.data.find((t) => t.type === "sankey");
  const head = `<div class="llama4-viz"><p><b>${escapeHtml(title || "Plotly figure")}</b> ` +
    `(interactive view needs the jupyterlab-plotly extension)</p>`;
  if (!sankey) return `${head}</div>`;
  const node = sankey.node as { label: string[] };
  const link = sankey.link as { source: number[]; target: number[]; value: number[] };
  const rows = link.source.map((s, i) =>
    `<tr><td>${escapeHtml(node.label[s])}</td><td>${escapeHtml(node.label[link.target[i]])}</td><td style="text-align:right">${link.value[i]}</td></tr>`,
  );
  return `${head}<table><thead><tr><th>from</th><th>to</th><th>tokens</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
}
