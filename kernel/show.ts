// show(spec): a viz/ figure as one rich output in the notebook (the MIME bundle JupyterLab renders
// natively, with a PNG fallback for GitHub / nbviewer). The one step from viz/ to the cell.
import { BundleOptions, htmlBundle, mimeBundle } from "../viz/bundle";
import type { PlotlyFigure, VegaLiteSpec } from "../viz/common";
import { display, DisplayHandle } from "./display";

export async function show(spec: VegaLiteSpec | PlotlyFigure, options: BundleOptions = {}): Promise<DisplayHandle | undefined> {
  return display(await mimeBundle(spec, options));
}

/** An HTML fragment (e.g. viz's textByExpertHTML) as a rich output. */
export function showHTML(html: string, plain?: string): DisplayHandle | undefined {
  return display(htmlBundle(html, plain));
}
