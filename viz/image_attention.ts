// Attention from generated tokens onto an image's patch tokens, drawn over the image. A Llama 4
// image is a grid of tiles (each S×S pixels of the resized, zero-padded image) plus, when there is
// more than one tile, a global tile (the whole image squeezed to S×S). Each tile becomes a g×g grid
// of <|patch|> tokens (the pixel shuffle merges 2×2 patches), in row-major order, tiles in
// row-major order, the global tile's tokens last. So every patch token has a rectangle of the
// original image, and the attention a generated token pays to it can be painted there.
import type { RawImage } from "../sdk/image_utils";
import type { ImagePatchLayout } from "../sdk/models/llama4/processing_llama4";
import type { GenerationTraceData } from "../sdk/trace";
import { attentionMapOf, layerKind } from "./attention";
import { maxOf, traceTitle, type PlotlyFigure } from "./common";
import { imagePNG } from "./render";

export interface ImageAttentionOptions {
  /** A layer recorded in the trace (generate({ output_trace: { attention_layers: [...] } }) with eager attention). */
  layer: number;
  /** A head, or "mean" over the heads recorded for the layer (default). */
  head?: number | "mean";
  /** processor.image_layout(image): where the image's patch tokens lie in it. */
  layout: ImagePatchLayout;
  /** Which image of the prompt, counting <|image_start|> tokens (default 0). */
  image_index?: number;
  /** Query positions to average; default: the generated tokens (the last prompt token if none). */
  queries?: number[];
}

export interface ImageAttentionData {
  /** [tiles down × g][tiles across × g] attention on the tile patches; null for a one-tile image. */
  tiles: number[][] | null;
  /** [g][g] attention on the global tile's patches (the single tile of a one-tile image). */
  global: number[][];
  /** The query positions averaged. */
  queries: number[];
  /** Positions of the image's patch tokens, in order. */
  positions: number[];
}

/** The attention of the chosen queries on one image's patches, as grids laid out like the image. */
export function imageAttentionData(trace: GenerationTraceData, options: ImageAttentionOptions): ImageAttentionData {
  const { layout, layer } = options;
  const g = Math.round(Math.sqrt(layout.tokens_per_tile));
  if (g * g !== layout.tokens_per_tile) throw new Error(`imageAttention: tokens_per_tile ${layout.tokens_per_tile} is not a square`);
  const [rows, cols] = layout.aspect_ratio;
  const tiled = rows * cols > 1;
  const imageIndex = options.image_index ?? 0;
  const { positions, separators } = imageTokens(trace, layout, imageIndex);
  const expected = (tiled ? rows * cols + 1 : 1) * layout.tokens_per_tile;
  // A 1x2 and a 2x1 image have as many patches; the tile separators tell them apart.
  const wrongGrid = separators !== null && (separators.x !== (tiled ? rows * (cols - 1) : 0) || separators.y !== (tiled ? rows : 0));
  if (positions.length !== expected || wrongGrid) {
    throw new Error(
      `imageAttention: image ${imageIndex} has ${positions.length} patch tokens` +
        (separators ? ` and ${separators.x}/${separators.y} tile x/y separators` : "") + ` in the trace, ` +
        `but its layout (${rows}x${cols} tiles of ${layout.tokens_per_tile}) needs ${expected}` +
        (separators ? ` and ${tiled ? rows * (cols - 1) : 0}/${tiled ? rows : 0}` : "") + `: is it the layout of this image?`,
    );
  }
  const heads = options.head === undefined || options.head === "mean"
    ? trace.attention.filter((a) => a.layer === layer).map((a) => a.head)
    : [options.head];
  if (heads.length === 0) attentionMapOf(trace, layer, 0); // throws, listing what was recorded
  const maps = heads.map((h) => attentionMapOf(trace, layer, h));
  const generated = trace.tokens.flatMap((t, i) => (t.is_prompt ? [] : [i]));
  const queries = options.queries ?? (generated.length ? generated : [trace.tokens.length - 1]);
  if (queries.length === 0) throw new Error("imageAttention: queries is empty; give at least one query position");
  const last = positions[positions.length - 1];
  for (const q of queries) {
    if (!Number.isInteger(q) || q <= last || q >= maps[0].probs.length) {
      throw new Error(`imageAttention: query ${q} must be a recorded position after the image (${last + 1}..${maps[0].probs.length - 1})`);
    }
  }
  // A chunked layer's query sees only the keys of its own chunk: a mean over queries that cannot see
  // (some of) the image would dilute or blank the picture without saying so.
  const kind = layerKind(trace, layer);
  if (kind.chunked && kind.chunk !== null) {
    const chunkOf = (pos: number) => Math.floor(pos / kind.chunk!);
    const blind = queries.find((q) => chunkOf(q) !== chunkOf(positions[0]) || chunkOf(q) !== chunkOf(last));
    if (blind !== undefined) {
      throw new Error(
        `imageAttention: layer ${layer} is a chunked-attention layer (chunk ${kind.chunk}) and query ${blind} does not see ` +
          `all of image ${imageIndex} (positions ${positions[0]}..${last}); pick a full-attention (NoPE) layer`,
      );
    }
  }
  const weight = (pos: number) => {
    let sum = 0;
    for (const map of maps) for (const q of queries) sum += map.probs[q][pos] ?? 0;
    return sum / (maps.length * queries.length);
  };
  const weights = positions.map(weight);
  const grid = (offset: number, gridRows: number, gridCols: number, index: (r: number, c: number) => number) =>
    Array.from({ length: gridRows }, (_, r) => Array.from({ length: gridCols }, (_, c) => weights[offset + index(r, c)]));
  const T = layout.tokens_per_tile;
  const tiles = tiled
    ? grid(0, rows * g, cols * g, (r, c) => (Math.floor(r / g) * cols + Math.floor(c / g)) * T + (r % g) * g + (c % g))
    : null;
  const global = grid(tiled ? rows * cols * T : 0, g, g, (r, c) => r * g + c);
  return { tiles, global, queries, positions };
}

/** The positions of the <|patch|> tokens between the image_index-th <|image_start|> and the next one, and
 * the count of tile separators there (null when the layout does not name their ids). */
function imageTokens(trace: GenerationTraceData, layout: ImagePatchLayout, imageIndex: number): { positions: number[]; separators: { x: number; y: number } | null } {
  const starts = trace.tokens.flatMap((t, i) => (t.id === layout.image_start_id ? [i] : []));
  if (imageIndex < 0 || imageIndex >= starts.length) {
    throw new Error(`imageAttention: image_index ${imageIndex} does not exist: the trace has ${starts.length} image${starts.length === 1 ? "" : "s"}`);
  }
  const end = starts[imageIndex + 1] ?? trace.tokens.length;
  const positions: number[] = [];
  const counted = layout.tile_x_separator_id !== undefined && layout.tile_y_separator_id !== undefined;
  const separators = { x: 0, y: 0 };
  for (let i = starts[imageIndex]; i < end; i++) {
    const id = trace.tokens[i].id;
    if (id === layout.patch_id) positions.push(i);
    else if (id === layout.tile_x_separator_id) separators.x++;
    else if (id === layout.tile_y_separator_id) separators.y++;
  }
  return { positions, separators: counted ? separators : null };
}

/**
 * Attention of the generated tokens on one image's patches, as translucent heatmaps over the image:
 * the tiles (left, when there are several) and the global tile (right).
 */
export async function imageAttention(
  trace: GenerationTraceData,
  options: ImageAttentionOptions & { image: RawImage; title?: string },
): Promise<PlotlyFigure> {
  const data = imageAttentionData(trace, options);
  const { layout, image } = options;
  if (image.width !== layout.image_width || image.height !== layout.image_height) {
    throw new Error(`imageAttention: the image is ${image.width}x${image.height} but the layout is for ${layout.image_width}x${layout.image_height}`);
  }
  const W = layout.image_width;
  const H = layout.image_height;
  const g = data.global.length;
  // At most 384 pixels on the long side: enough under a heatmap.
  const source = `data:image/png;base64,${(await imagePNG(image, 384)).toString("base64")}`;
  const zmax = maxOf([...data.global.flat(), ...(data.tiles ?? []).flat()], 0) || 1;
  // Tile grid cells measured in image pixels: the canvas holds the image scaled to resized_*.
  const tileCell = {
    dx: (layout.tile_size / g) * (W / layout.resized_width),
    dy: (layout.tile_size / g) * (H / layout.resized_height),
  };
  const panels = [
    ...(data.tiles ? [{ z: data.tiles, ...tileCell, name: "tiles" }] : []),
    { z: data.global, dx: data.tiles ? W / g : tileCell.dx, dy: data.tiles ? H / g : tileCell.dy, name: data.tiles ? "global tile" : "tile" },
  ];
  const axis = (i: number) => (i === 0 ? "" : String(i + 1));
  const figure: PlotlyFigure = {
    data: panels.map((p, i) => ({
      type: "heatmap",
      z: p.z,
      x0: p.dx / 2,
      dx: p.dx,
      y0: p.dy / 2,
      dy: p.dy,
      xaxis: `x${axis(i)}`,
      yaxis: `y${axis(i)}`,
      zmin: 0,
      zmax,
      opacity: 0.55,
      colorscale: "Viridis",
      showscale: i === panels.length - 1,
      name: p.name,
      hovertemplate: `${p.name}: %{z:.4f}<extra></extra>`,
    })),
    layout: {
      title: {
        text: traceTitle(trace, `Attention of ${data.queries.length} token${data.queries.length === 1 ? "" : "s"} on image ${options.image_index ?? 0}, ` +
          `layer ${options.layer}, ${options.head === undefined || options.head === "mean" ? "mean of heads" : `head ${options.head}`}`),
      },
      images: panels.map((_, i) => ({
        source, xref: `x${axis(i)}`, yref: `y${axis(i)}`, x: 0, y: 0, sizex: W, sizey: H, sizing: "stretch", layer: "below",
      })),
      annotations: panels.map((p, i) => ({
        text: p.name, showarrow: false, xref: `x${axis(i)} domain`, yref: `y${axis(i)} domain`, x: 0.5, y: 1.06,
      })),
      // No width: the figure follows its output area (responsive). Panels keep the picture's aspect
      // (scaleanchor) inside the height, sized for panels about 360 px wide; a very tall or wide one is clamped.
      height: Math.round(Math.min(720, Math.max(120, 360 * (H / W)))) + 140,
    },
  };
  panels.forEach((_, i) => {
    const domain = panels.length === 1 ? [0, 1] : i === 0 ? [0, 0.46] : [0.54, 1];
    figure.layout[`xaxis${axis(i)}`] = { range: [0, W], domain, visible: false };
    figure.layout[`yaxis${axis(i)}`] = { range: [H, 0], visible: false, scaleanchor: `x${axis(i)}` };
  });
  return figure;
}
