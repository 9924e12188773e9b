// Llama4ImageProcessor: transformers' image_processing_llama4.py (its torchvision backend, which
// transformers also names Llama4ImageProcessorFast), numerically equal to it.
//
// Each image is resized without distortion to fit the best canvas of square tiles (at most
// max_patches of them), padded with black on the right and bottom, normalised, and cut into tiles,
// row by row; an image of more than one tile also gets a global tile: the whole image squeezed to
// one tile. Resizing is torch's uint8 antialiased bilinear (see resizeBilinearAntialias), and
// rescale + normalise run in bfloat16 as transformers does, so pixel_values carry bfloat16 values.
import { existsSync } from "node:fs";
import { join } from "node:path";

import { readJsonFile, type JsonObject } from "../../configuration_utils";
import { HUB_OPTION_KEYS, hubOptionsOf, resolvePretrained, type PretrainedOptions } from "../../hub";
import { load_image, RawImage, resizeBilinearAntialias, type ImageInput, type LoadImageOptions } from "../../image_utils";
import { Tensor } from "../../tensor";
import { CallableInstance } from "../../tokenization_utils";
import { checkAffordable, checkedProduct } from "../../utils/sizes";
import { checkOptions, describe } from "../../utils/options";

/** PILImageResampling.BILINEAR, the only resampling Llama 4 uses. */
const BILINEAR = 2;

/** The settings of preprocessor_config.json that preprocess() can also take per call. */
export interface Llama4ImageProcessorOverrides {
  /** Tile size; must be square. A number n means {height: n, width: n}. */
  size?: { height: number; width: number } | number;
  max_patches?: number;
  resize_to_max_canvas?: boolean;
  /** Must stay true: Llama 4 always resizes (transformers refuses false too). */
  do_resize?: boolean;
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number | number[];
  image_std?: number | number[];
  /** Accepted for compatibility; decoded images are always RGB already. */
  do_convert_rgb?: boolean;
  /** Only 2 (PILImageResampling.BILINEAR) is supported. */
  resample?: number | null;
}

export interface Llama4ImageProcessorCallOptions extends Llama4ImageProcessorOverrides {
  /** Accepted so `image_processor(images, { return_tensors: "pt" })` ports; pixel_values is always one Tensor. */
  return_tensors?: "pt" | null;
  /** How paths, URLs and bytes are loaded (fetch for URLs, pixel limit). */
  load_image_options?: LoadImageOptions;
}

export interface Llama4ImageProcessorOutput {
  /** float32 [total tiles, 3, size.height, size.width]: each image's tiles row by row, then its global tile. */
  pixel_values: Tensor;
  /** [tile rows, tile columns] of each image. */
  aspect_ratios: number[][];
}

/** Images as the processor takes them: one, a list, or nested lists (flattened in order). */
export type ImagesInput = ImageInput | ImagesInput[];

const OVERRIDE_KEYS = ["size", "max_patches", "resize_to_max_canvas", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
  "image_mean", "image_std", "do_convert_rgb", "resample"] as const;
const CALL_KEYS = [...OVERRIDE_KEYS, "return_tensors", "load_image_options"] as const;

interface Settings {
  size: { height: number; width: number };
  max_patches: number;
  resize_to_max_canvas: boolean;
  do_rescale: boolean;
  rescale_factor: number;
  do_normalize: boolean;
  image_mean: number[];
  image_std: number[];
  do_convert_rgb: boolean;
  resample: number;
}

/** transformers' class defaults. */
const DEFAULTS: Settings = {
  size: { height: 336, width: 336 },
  max_patches: 16,
  resize_to_max_canvas: false,
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  do_convert_rgb: true,
  resample: BILINEAR,
};

export interface Llama4ImageProcessor {
  (images: ImagesInput, options?: Llama4ImageProcessorCallOptions): Promise<Llama4ImageProcessorOutput>;
}

export class Llama4ImageProcessor extends CallableInstance {
  size: { height: number; width: number };
  max_patches: number;
  resize_to_max_canvas: boolean;
  do_resize = true;
  do_rescale: boolean;
  rescale_factor: number;
  do_normalize: boolean;
  image_mean: number[];
  image_std: number[];
  do_convert_rgb: boolean;
  resample: number;

  /** From the object of a preprocessor_config.json; missing keys take transformers' defaults, keys
   * that are not settings of this processor (image_processor_type, processor_class, ...) are ignored. */
  constructor(config: JsonObject = {}) {
    super();
    if (config === null || typeof config !== "object" || Array.isArray(config)) {
      throw new TypeError(`Llama4ImageProcessor: expected the preprocessor_config.json object, got ${describe(config)}`);
    }
    const known = Object.fromEntries(Object.entries(config).filter(([k]) => (OVERRIDE_KEYS as readonly string[]).includes(k)));
    const settings = resolveSettings(DEFAULTS, known, "Llama4ImageProcessor");
    this.size = settings.size;
    this.max_patches = settings.max_patches;
    this.resize_to_max_canvas = settings.resize_to_max_canvas;
    this.do_rescale = settings.do_rescale;
    this.rescale_factor = settings.rescale_factor;
    this.do_normalize = settings.do_normalize;
    this.image_mean = settings.image_mean;
    this.image_std = settings.image_std;
    this.do_convert_rgb = settings.do_convert_rgb;
    this.resample = settings.resample;
  }

  /** The image_processor entry of processor_config.json, or else preprocessor_config.json, of a local
   * directory or Hub repo (see readImageProcessorConfig); options are the Hub options plus settings that override the file's. */
  static async from_pretrained(pathOrId: string, options: PretrainedOptions & Llama4ImageProcessorOverrides = {}): Promise<Llama4ImageProcessor> {
    checkOptions("from_pretrained", options, [...HUB_OPTION_KEYS, ...OVERRIDE_KEYS]);
    const dir = await resolvePretrained(pathOrId, { required: [], optional: ["preprocessor_config.json", "processor_config.json"] }, hubOptionsOf(options));
    const config = readImageProcessorConfig(dir);
    if (!config) throw new Error(`${pathOrId}: no preprocessor_config.json (nor an image_processor in processor_config.json)`);
    const overrides = Object.fromEntries(Object.entries(options).filter(([k]) => (OVERRIDE_KEYS as readonly string[]).includes(k)));
    return new Llama4ImageProcessor({ ...config, ...overrides });
  }

  /** transformers' `image_processor(images, **kwargs)`; instances are callable the same way. */
  __call__(images: ImagesInput, options: Llama4ImageProcessorCallOptions = {}): Promise<Llama4ImageProcessorOutput> {
    return this.preprocess(images, options);
  }

  async preprocess(images: ImagesInput, options: Llama4ImageProcessorCallOptions = {}): Promise<Llama4ImageProcessorOutput> {
    checkOptions("Llama4ImageProcessor.preprocess", options, CALL_KEYS);
    const { return_tensors, load_image_options, ...overrides } = options;
    if (return_tensors !== undefined && return_tensors !== null && return_tensors !== "pt") {
      throw new Error(`Llama4ImageProcessor.preprocess: return_tensors must be "pt" or null, got ${describe(return_tensors)}`);
    }
    const settings = resolveSettings(this.settings(), overrides, "Llama4ImageProcessor.preprocess");
    const sources = flatten(images);
    if (sources.length === 0) throw new Error("Llama4ImageProcessor.preprocess: no images given");
    const decoded = await Promise.all(sources.map(async (source, i) => {
      try {
        return await load_image(source, load_image_options);
      } catch (err) {
        const which = sources.length > 1 ? `image ${i + 1} of ${sources.length}` : "image";
        throw new Error(`Llama4ImageProcessor: ${which}: ${(err as Error).message}`, { cause: err });
      }
    }));
    return tileImages(decoded, settings);
  }

  /** How an image of this size is laid out: its tile grid, the canvas and the size it is resized to inside it. */
  plan(width: number, height: number): { aspect_ratio: [number, number]; canvas: [number, number]; resized: [number, number] } {
    const s = this.settings();
    const p = planImage(height, width, s, find_supported_resolutions(s.max_patches, s.size));
    return { aspect_ratio: [p.rows, p.cols], canvas: p.canvas, resized: p.resized };
  }

  private settings(): Settings {
    const { size, max_patches, resize_to_max_canvas, do_rescale, rescale_factor, do_normalize, image_mean, image_std, do_convert_rgb, resample } = this;
    return { size, max_patches, resize_to_max_canvas, do_rescale, rescale_factor, do_normalize, image_mean, image_std, do_convert_rgb, resample };
  }
}

/** transformers 5 calls the torchvision processor Llama4ImageProcessor and keeps the old name as an alias. */
export const Llama4ImageProcessorFast = Llama4ImageProcessor;
export type Llama4ImageProcessorFast = Llama4ImageProcessor;

/** make_flat_list_of_images: nested lists in order. */
function flatten(images: ImagesInput): ImageInput[] {
  return Array.isArray(images) ? images.flatMap(flatten) : [images];
}

function resolveSettings(base: Settings, overrides: Record<string, unknown>, where: string): Settings {
  const s: Settings = { ...base };
  const fail = (key: string, wanted: string, value: unknown): never => {
    throw new Error(`${where}: ${key} must be ${wanted}, got ${JSON.stringify(value) ?? describe(value)}`);
  };
  const positiveInt = (key: string, v: unknown) => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : fail(key, "a positive integer", v));
  const bool = (key: string, v: unknown) => (typeof v === "boolean" ? v : fail(key, "true or false", v));
  const channels = (key: string, v: unknown) => {
    const list = typeof v === "number" ? [v, v, v] : v;
    if (!Array.isArray(list) || list.length !== 3 || !list.every((x) => typeof x === "number" && Number.isFinite(x))) {
      return fail(key, "a number or a list of 3 numbers", v);
    }
    return list as number[];
  };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined || (value === null && key !== "resample")) continue; // null means "the default", as in transformers
    switch (key) {
      case "size": {
        const size = typeof value === "number" ? { height: value, width: value } : (value as { height?: unknown; width?: unknown });
        if (typeof size !== "object" || size === null || !Number.isInteger(size.height) || !Number.isInteger(size.width) ||
          (size.height as number) < 1 || (size.width as number) < 1) {
          fail("size", "{height, width} with positive integers", value);
        }
        if (size.height !== size.width) fail("size", "square (height == width), as find_supported_resolutions requires", value);
        s.size = { height: size.height as number, width: size.width as number };
        break;
      }
      case "max_patches": s.max_patches = positiveInt(key, value); break;
      case "resize_to_max_canvas": s.resize_to_max_canvas = bool(key, value); break;
      case "do_resize":
        if (value !== true) {
          throw new Error(`${where}: do_resize=false is not supported: Llama 4 always resizes images to one of its supported resolutions (as in transformers)`);
        }
        break;
      case "do_rescale": s.do_rescale = bool(key, value); break;
      case "do_normalize": s.do_normalize = bool(key, value); break;
      case "do_convert_rgb": s.do_convert_rgb = bool(key, value); break;
      case "rescale_factor":
        s.rescale_factor = typeof value === "number" && Number.isFinite(value) ? value : fail(key, "a finite number", value);
        break;
      case "image_mean": s.image_mean = channels(key, value); break;
      case "image_std":
        s.image_std = channels(key, value);
        if (s.image_std.includes(0)) fail(key, "non-zero (it divides)", value);
        break;
      case "resample":
        if (value !== null && value !== BILINEAR) {
          throw new Error(`${where}: resample ${JSON.stringify(value)} is not supported; only ${BILINEAR} (PILImageResampling.BILINEAR) is implemented`);
        }
        s.resample = BILINEAR;
        break;
    }
  }
  checkCanvasCost(s, where);
  if (s.do_normalize && !s.do_rescale) {
    // torchvision's normalize refuses uint8 input, so transformers raises here too.
    throw new Error(`${where}: do_normalize without do_rescale is not supported (transformers' torchvision backend cannot normalise uint8 pixels)`);
  }
  return s;
}

/** Most tiles a canvas may have: find_supported_resolutions enumerates every grid up to it. */
const MAX_PATCHES_LIMIT = 2 ** 16;

/** Refuses a max_patches / size whose largest canvas would cost absurd time or memory, before any image. */
function checkCanvasCost(s: Settings, where: string): void {
  if (s.max_patches > MAX_PATCHES_LIMIT) {
    throw new Error(`${where}: max_patches ${s.max_patches} is more than the ${MAX_PATCHES_LIMIT} tiles a canvas may have`);
  }
  // pixel_values of the largest canvas (plus the global tile), float32, and the resized image in RGB bytes.
  const tileValues = checkedProduct([3, s.size.height, s.size.width], `${where}: size`);
  const bytes = checkedProduct([s.max_patches + 1, tileValues, 5], `${where}: max_patches x size`);
  checkAffordable(bytes, `${where}: max_patches ${s.max_patches} at size ${s.size.height}: the largest canvas`);
}

// ---------------------------------------------------------------------------------------------
// Canvas selection, as in transformers (same names). torch computes the scales of get_best_fit in
// float32 (int64 tensor / int), so ties and comparisons here are made on float32 values.

/** All divisors of `dividend`. */
export function get_factors(dividend: number): Set<number> {
  const factors = new Set<number>();
  for (let i = 1; i <= Math.floor(Math.sqrt(dividend)); i++) {
    if (dividend % i === 0) {
      factors.add(i);
      factors.add(dividend / i);
    }
  }
  return factors;
}

/** Every [height, width] canvas of at most `max_num_chunks` tiles, in transformers' order (grouped by
 * aspect ratio in order of first appearance, from max_num_chunks tiles down to one). */
export function find_supported_resolutions(max_num_chunks: number, patch_size: { height: number; width: number }): [number, number][] {
  if (patch_size.height !== patch_size.width) throw new Error("find_supported_resolutions: `size` must be square.");
  const byRatio = new Map<number, [number, number][]>();
  for (let chunks = max_num_chunks; chunks > 0; chunks--) {
    for (const h of [...get_factors(chunks)].sort((a, b) => a - b)) {
      const w = chunks / h;
      const group = byRatio.get(h / w) ?? [];
      group.push([h, w]);
      byRatio.set(h / w, group);
    }
  }
  return [...byRatio.values()].flat().map(([h, w]) => [h * patch_size.height, w * patch_size.height]);
}

/**
 * The canvas to resize `image_size` ([height, width]) into without distortion: the smallest upscale
 * if any canvas allows upscaling (the largest with resize_to_max_canvas), else the mildest
 * downscale; among canvases with that scale, the one of least area (the first on ties).
 */
export function get_best_fit(image_size: [number, number], possible_resolutions: [number, number][], resize_to_max_canvas = false): [number, number] {
  const [height, width] = image_size;
  const scales = possible_resolutions.map(([h, w]) => Math.min(Math.fround(h / height), Math.fround(w / width)));
  const upscales = scales.filter((s) => s >= 1);
  // Reductions, not Math.max(...): max_patches in the thousands gives more canvases than the stack holds arguments.
  const max = (xs: number[]) => xs.reduce((m, x) => Math.max(m, x), -Infinity);
  const selected = upscales.length > 0
    ? (resize_to_max_canvas ? max(upscales) : upscales.reduce((m, x) => Math.min(m, x), Infinity))
    : max(scales.filter((s) => s < 1));
  let best: [number, number] | undefined;
  possible_resolutions.forEach((r, i) => {
    if (scales[i] === selected && (best === undefined || r[0] * r[1] < best[0] * best[1])) best = r;
  });
  return [best![0], best![1]];
}

/**
 * The largest [height, width] with the aspect ratio of `image_size` that fits `target_size`.
 * `float32` says which target entries transformers holds as torch tensors: their scale is computed
 * and compared in float32 instead of Python's double, which can move the floor by one pixel.
 */
export function get_max_res_without_distortion(
  image_size: [number, number],
  target_size: [number, number],
  float32: [boolean, boolean] = [false, false],
): [number, number] {
  const [height, width] = image_size;
  const [targetHeight, targetWidth] = target_size;
  const scaleW = float32[1] ? Math.fround(targetWidth / width) : targetWidth / width;
  const scaleH = float32[0] ? Math.fround(targetHeight / height) : targetHeight / height;
  const widthLimits = float32[0] || float32[1] ? Math.fround(scaleW) < Math.fround(scaleH) : scaleW < scaleH;
  if (widthLimits) {
    const scaled = float32[1] ? Math.fround(height * scaleW) : height * scaleW;
    return [Math.min(Math.floor(scaled), targetHeight), targetWidth];
  }
  const scaled = float32[0] ? Math.fround(width * scaleH) : width * scaleH;
  return [targetHeight, Math.min(Math.floor(scaled), targetWidth)];
}

/** The canvas, the resized size and the tile grid of one image, as Llama4ImageProcessor._preprocess computes them. */
function planImage(height: number, width: number, s: Settings, resolutions: [number, number][]) {
  const canvas = get_best_fit([height, width], resolutions, s.resize_to_max_canvas);
  let target = canvas;
  let float32: [boolean, boolean] = [true, true];
  if (!s.resize_to_max_canvas) {
    // Upscaling is limited to one tile side. Python's min(int, tensor) keeps the int unless the
    // tensor is smaller, which decides whether the next step runs in double or float32.
    const limitH = Math.max(height, s.size.height);
    const limitW = Math.max(width, s.size.height);
    target = [Math.min(limitH, canvas[0]), Math.min(limitW, canvas[1])];
    float32 = [canvas[0] < limitH, canvas[1] < limitW];
  }
  const [h, w] = get_max_res_without_distortion([height, width], target, float32);
  return { canvas, resized: [Math.max(h, 1), Math.max(w, 1)] as [number, number], rows: canvas[0] / s.size.height, cols: canvas[1] / s.size.width };
}

// ---------------------------------------------------------------------------------------------
// Rescale + normalise. transformers casts the uint8 pixels to bfloat16, multiplies by rescale_factor
// and normalises with bfloat16 mean and std, each op computed in float32 and rounded to bfloat16.
// Every output is a function of one byte and its channel, so it is tabulated once per call.

const f32Slot = new Float32Array(1);
const u32Slot = new Uint32Array(f32Slot.buffer);

/** Rounds to float32, then to bfloat16 (nearest, ties to even), as torch's float -> bfloat16. */
function bfloat16(x: number): number {
  f32Slot[0] = x;
  const bits = u32Slot[0];
  u32Slot[0] = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
  return f32Slot[0];
}

/** The output value of byte v in channel c at [c * 256 + v]. */
function pixelTable(s: Settings): Float32Array {
  const table = pixelValues(s);
  const bad = table.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new Error(`Llama4ImageProcessor: rescale_factor ${s.rescale_factor}, image_mean [${s.image_mean}] and image_std [${s.image_std}] ` +
      `turn byte ${bad % 256} of channel ${Math.floor(bad / 256)} into ${table[bad]}`);
  }
  return table;
}

function pixelValues(s: Settings): Float32Array {
  const table = new Float32Array(3 * 256);
  const factor = Math.fround(s.rescale_factor);
  for (let c = 0; c < 3; c++) {
    const mean = bfloat16(s.image_mean[c]);
    const std = bfloat16(s.image_std[c]);
    for (let v = 0; v < 256; v++) {
      let x = v;
      if (s.do_rescale && s.do_normalize) {
        x = bfloat16(bfloat16(bfloat16(v * factor) - mean) / std);
      } else if (s.do_rescale) {
        x = v * factor; // float32 multiply: the stored value rounds it
      }
      table[c * 256 + v] = x;
    }
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Pad + split into tiles.

function tileImages(images: RawImage[], s: Settings): Llama4ImageProcessorOutput {
  const resolutions = find_supported_resolutions(s.max_patches, s.size);
  const plans = images.map((img) => planImage(img.height, img.width, s, resolutions));
  const tileCount = (p: (typeof plans)[number]) => p.rows * p.cols + (p.rows * p.cols > 1 ? 1 : 0);
  const tile = s.size.height;
  const tileValues = 3 * tile * tile;
  const out = new Float32Array(plans.reduce((n, p) => n + tileCount(p), 0) * tileValues);
  const table = pixelTable(s);
  let offset = 0;
  images.forEach((img, i) => {
    const plan = plans[i];
    const resized = resizeBilinearAntialias(img, plan.resized[0], plan.resized[1]);
    for (let row = 0; row < plan.rows; row++) {
      for (let col = 0; col < plan.cols; col++) {
        writeTile(resized, row * tile, col * tile, tile, table, out, offset);
        offset += tileValues;
      }
    }
    if (plan.rows * plan.cols > 1) {
      writeTile(resizeBilinearAntialias(img, tile, tile), 0, 0, tile, table, out, offset);
      offset += tileValues;
    }
  });
  return {
    pixel_values: new Tensor("float32", out, [offset / tileValues, 3, tile, tile]),
    aspect_ratios: plans.map((p) => [p.rows, p.cols]),
  };
}

/** The tile x tile window at (top, left) of `image` as CHW values at out[offset]; outside the image
 * is the zero padding of pad_to_best_fit (byte 0, normalised like any pixel). */
function writeTile(image: RawImage, top: number, left: number, tile: number, table: Float32Array, out: Float32Array, offset: number): void {
  const { data, width, height } = image;
  const inside = Math.max(0, Math.min(tile, width - left));
  for (let c = 0; c < 3; c++) {
    const channelTable = table.subarray(c * 256, c * 256 + 256);
    const pad = channelTable[0];
    for (let r = 0; r < tile; r++) {
      const o = offset + (c * tile + r) * tile;
      const y = top + r;
      if (y >= height) {
        out.fill(pad, o, o + tile);
        continue;
      }
      let p = (y * width + left) * 3 + c;
      for (let q = 0; q < inside; q++, p += 3) out[o + q] = channelTable[data[p]];
      out.fill(pad, o + inside, o + tile);
    }
  }
}

/**
 * The image processor settings of a checkpoint directory, where transformers 5 looks first: nested in
 * processor_config.json (how it saves them), else preprocessor_config.json (how Meta's repos have them).
 * undefined when there are none.
 */
export function readImageProcessorConfig(dir: string): JsonObject | undefined {
  const processorConfig = join(dir, "processor_config.json");
  const nested = existsSync(processorConfig) ? (readJsonFile(processorConfig).image_processor as JsonObject | undefined) : undefined;
  if (nested) return nested;
  const preprocessorConfig = join(dir, "preprocessor_config.json");
  return existsSync(preprocessorConfig) ? readJsonFile(preprocessorConfig) : undefined;
}
