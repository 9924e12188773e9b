// show(spec): a viz/ figure as one rich output in the notebook (the MIME bundle JupyterLab renders
// natively, with a PNG fallback for GitHub / nbviewer). The one step from viz/ to the cell.
import type { RawImage } from "../sdk/image_utils";
import { BundleOptions, htmlBundle, mimeBundle } from "../viz/bundle";
import { imagePNG } from "../viz/render";
import type { PlotlyFigure, VegaLiteSpec } from "../viz/common";
import { display, DisplayHandle } from "./display";

export async function show(spec: VegaLiteSpec | PlotlyFigure, options: BundleOptions = {}): Promise<DisplayHandle | undefined> {
  return display(await mimeBundle(spec, options));
}

/** An HTML fragment (e.g. viz's textByExpertHTML) as a rich output. */
export function showHTML(html: string, plain?: string): DisplayHandle | undefined {
  return display(htmlBundle(html, plain));
}

/** An image (e.g. from load_image) as a PNG output, at most `maxSize` pixels on its long side (default 512). */
export async function showImage(image: RawImage, options: { maxSize?: number } = {}): Promise<DisplayHandle | undefined> {
  const maxSize = options.maxSize ?? 512;
  if (!Number.isInteger(maxSize) || maxSize < 1) throw new Error(`showImage: maxSize must be a positive whole number of pixels, got ${maxSize}`);
  const png = await imagePNG(image, maxSize);
  return display({ "image/png": png.toString("base64"), "text/plain": `<RGB image ${image.width}x${image.height}>` });
}
