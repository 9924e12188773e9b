// Images as transformers sees them: `load_image` (transformers' image_utils.load_image) decodes a
// path, URL, data URL, base64 string, encoded bytes or a sharp pipeline into 8-bit RGB pixels, and
// `resizeBilinearAntialias` resamples them exactly as torch does for the Llama 4 image processor.
//
// Decoding matches PIL's `Image.open` + `ImageOps.exif_transpose` + `.convert("RGB")`, which is also
// what transformers' tensor loader (torchvision `decode_image(mode=RGB, apply_exif_orientation=True)`)
// gives for the files in test/fixtures/images:
// - EXIF orientation is applied.
// - Alpha is DROPPED, not composited: `.convert("RGB")` and torchvision's RGB mode keep the stored
//   colour of every pixel, even fully transparent ones (likewise grey + alpha, and palette images
//   with transparency). transformers blends onto white only images handed to the processor as
//   objects (an RGBA PIL image, array or tensor); paths, URLs and base64, the sources here, never are.
// - Greyscale is replicated into three channels; CMYK becomes RGB with PIL's formula
//   R = (255 - K) - (C * (255 - K)) / 255 on the un-inverted CMYK values, not through an ICC profile.
// - Embedded ICC profiles are ignored (PIL does not colour-manage on convert; sharp would by default).
// - 16-bit images keep the high byte. transformers 5.24 disagrees with itself there, and neither is copied:
//   paths and URLs decode through torchvision to uint16 and are still rescaled by 1/255 (pixel values up
//   to about 500), while PIL images clip 16-bit greyscale at 255.
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Metadata, OutputInfo, Sharp } from "sharp";

import { readRegularFile } from "./utils/files";
import { sharpLib } from "./utils/lazy_modules";
import { decodeThinPng } from "./utils/png";
import { checkOptions, describe } from "./utils/options";

/** An 8-bit RGB image, pixels row-major with the three channels interleaved (HWC). */
export class RawImage {
  readonly channels = 3;

  constructor(
    readonly data: Uint8Array,
    readonly width: number,
    readonly height: number,
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new Error(`RawImage: width and height must be positive integers, got ${width}x${height}`);
    }
    if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
      throw new Error(`RawImage: ${width}x${height} RGB needs ${width * height * 3} bytes, got ${data instanceof Uint8Array ? data.length : describe(data)}`);
    }
  }
}

/** What load_image accepts. Strings are file paths, http(s) or file URLs, `data:image/...;base64,` URLs
 * or bare base64. A sharp instance is auto-oriented and taken as its pipeline outputs it (its own
 * options apply, e.g. colour management unless it was created with `ignoreIcc: true`). */
export type ImageInput = string | URL | Uint8Array | ArrayBuffer | Sharp | RawImage;

export interface LoadImageOptions {
  /** fetch implementation for http(s) URLs (proxies, tests). Default: global fetch. */
  fetch?: typeof fetch;
  /** Seconds to wait for an http(s) URL, as transformers' `timeout`. Default: no limit. */
  timeout?: number;
  /** Largest width × height decoded; larger images are refused from their header, before any pixel is
   * decoded. Default: PIL's decompression-bomb limit, 2 × Image.MAX_IMAGE_PIXELS. Infinity disables it. */
  maxPixels?: number;
}

export const LOAD_IMAGE_OPTION_KEYS = ["fetch", "timeout", "maxPixels"] as const;
export const DEFAULT_MAX_PIXELS = 2 * 89478485;
/** Largest image file read from disk: an uncompressed RGBA image at the default pixel limit. */
const MAX_IMAGE_FILE_BYTES = 4 * DEFAULT_MAX_PIXELS + 2 ** 20;

// PIL reads these (AVIF/HEIF since Pillow 11.2); sharp can also render SVG and PDF, which PIL cannot.
const SUPPORTED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif", "avif"]);
const BASE64_RE = /^[A-Za-z0-9+/\s]+={0,2}\s*$/;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Decodes one image to 8-bit RGB, as transformers' load_image does (see the notes at the top of this file). */
export async function load_image(input: ImageInput, options: LoadImageOptions = {}): Promise<RawImage> {
  checkOptions("load_image", options, LOAD_IMAGE_OPTION_KEYS);
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (typeof maxPixels !== "number" || !(maxPixels > 0)) throw new Error(`load_image: maxPixels must be a positive number, got ${describe(maxPixels)}`);
  const { timeout } = options;
  if (timeout !== undefined && !(typeof timeout === "number" && timeout > 0)) {
    throw new Error(`load_image: timeout must be a positive number of seconds, got ${describe(timeout)}`);
  }
  // Node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer wait is no limit at all.
  const urlOptions = timeout !== undefined && timeout * 1000 > MAX_TIMER_MS ? { ...options, timeout: undefined } : options;

  if (input instanceof RawImage) return input;
  // A sharp pipeline is taken as it outputs, whatever it was made from (raw pixels, create, ...).
  if (isSharp(input)) return decode(input.clone().autoOrient(), "sharp instance", maxPixels, { anyFormat: true });
  if (input instanceof Uint8Array || input instanceof ArrayBuffer) {
    const bytes = input instanceof ArrayBuffer ? Buffer.from(input) : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    return decodeBytes(bytes, `image bytes (${bytes.length} bytes)`, maxPixels);
  }
  if (input instanceof URL) return loadUrl(input, urlOptions, maxPixels);
  if (typeof input !== "string") {
    throw new TypeError(`load_image: expected a file path, an http(s) or data URL, base64 text, encoded bytes, a sharp instance or a RawImage, got ${describe(input)}`);
  }
  if (/^https?:\/\//i.test(input)) return loadUrl(parseUrl(input), urlOptions, maxPixels);
  if (/^file:\/\//i.test(input)) return loadFile(filePathOf(input), maxPixels);
  if (input.startsWith("data:")) {
    const match = /^data:(image\/[^;,]*)(?:;[^,]*)?;base64,/i.exec(input);
    if (!match) throw new Error(`load_image: ${describe(input)} is a data URL but not a base64 "data:image/...;base64," one`);
    const what = `data URL (${match[1]}, ${input.length} characters)`;
    return decodeBytes(Buffer.from(input.slice(match[0].length), "base64"), what, maxPixels);
  }
  // transformers tries base64 for any string that is not a file; here only text that can be base64 is.
  if (input.length >= 32 && BASE64_RE.test(input) && !(await exists(input))) {
    try {
      return await decodeBytes(Buffer.from(input, "base64"), `base64 string (${input.length} characters)`, maxPixels);
    } catch (err) {
      if (!(err instanceof UnreadableImageError)) throw err;
      throw new Error(`load_image: ${describe(input)}: no such file, and not base64 image data either`, { cause: err });
    }
  }
  return loadFile(input, maxPixels);
}

/** The bytes are not an image sharp can identify (as opposed to a damaged or refused one). */
class UnreadableImageError extends Error {}

function isSharp(value: unknown): value is Sharp {
  const v = value as Partial<Sharp> | null;
  return typeof v === "object" && v !== null && typeof v.clone === "function" && typeof v.metadata === "function" && typeof v.raw === "function";
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function parseUrl(text: string): URL {
  try {
    return new URL(text);
  } catch {
    throw new Error(`load_image: ${describe(text)} is not a valid URL`);
  }
}

function filePathOf(url: string | URL): string {
  try {
    return fileURLToPath(url);
  } catch (e) {
    throw new Error(`load_image: ${String(url)}: not a usable file URL (${(e as Error).message})`);
  }
}

async function loadFile(path: string, maxPixels: number): Promise<RawImage> {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path, MAX_IMAGE_FILE_BYTES);
  } catch (e) {
    throw new Error(`load_image: ${(e as Error).message}`);
  }
  return decodeBytes(bytes, path, maxPixels);
}

async function loadUrl(url: URL, options: LoadImageOptions, maxPixels: number): Promise<RawImage> {
  if (url.protocol === "file:") return loadFile(filePathOf(url), maxPixels);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`load_image: ${url.href}: only http(s) and file URLs are supported`);
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const { timeout } = options;
  let bytes: Buffer;
  try {
    const response = await fetchImpl(url, { redirect: "follow", signal: timeout === undefined ? undefined : AbortSignal.timeout(timeout * 1000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
    bytes = await readBody(response, MAX_IMAGE_FILE_BYTES);
  } catch (e) {
    throw new Error(`load_image: ${url.href}: ${messageChain(e)}`);
  }
  return decodeBytes(bytes, url.href, maxPixels);
}

/** A response body of at most `maxBytes`, read as it streams: an endless or huge body is cut off with an error
 * rather than buffered until memory runs out. */
async function readBody(response: Response, maxBytes: number): Promise<Buffer> {
  const declared = Number(response.headers.get("content-length"));
  const tooLarge = (n: number) => new Error(`the response is ${n} bytes or more, larger than the ${maxBytes} an image file may be`);
  if (declared > maxBytes) throw tooLarge(declared);
  if (!response.body) return Buffer.from(await response.arrayBuffer());
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > maxBytes) throw tooLarge(total); // leaving the loop cancels the stream
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** The message with those of its causes: "fetch failed" hides the reason (refused, DNS, TLS) there. */
function messageChain(err: unknown): string {
  let msg = err instanceof Error ? err.message : String(err);
  for (let cur = err, depth = 0; depth < 5 && cur instanceof Error && cur.cause instanceof Error; depth++) {
    cur = cur.cause;
    msg = `${msg}: ${(cur as Error).message}`;
  }
  return msg;
}

async function decodeBytes(bytes: Buffer, what: string, maxPixels: number): Promise<RawImage> {
  if (bytes.length === 0) throw new Error(`load_image: ${what}: empty, no image data`);
  const thin = decodeThinPng(bytes, maxPixels);
  if (thin) return new RawImage(thin.data, thin.width, thin.height);
  // failOn "truncated" rejects cut-off files and decoder errors, as PIL does, while accepting the
  // recoverable "corrupt data" warnings PIL also ignores. Our own maxPixels replaces sharp's limit.
  const pipeline = sharpLib()(bytes, { failOn: "truncated", ignoreIcc: true, limitInputPixels: false, autoOrient: true });
  return decode(pipeline, what, maxPixels);
}

async function decode(pipeline: Sharp, what: string, maxPixels: number, { anyFormat = false } = {}): Promise<RawImage> {
  let meta: Metadata;
  try {
    meta = await pipeline.metadata();
  } catch (e) {
    throw new UnreadableImageError(
      `load_image: ${what}: not a readable image (${(e as Error).message.trim()}; readable formats: ${[...SUPPORTED_FORMATS].join(", ")})`,
    );
  }
  if (!anyFormat && !SUPPORTED_FORMATS.has(meta.format ?? "")) {
    throw new Error(`load_image: ${what}: unsupported image format "${meta.format}" (supported: ${[...SUPPORTED_FORMATS].join(", ")})`);
  }
  const { width = 0, height = 0 } = meta;
  if (width < 1 || height < 1) throw new Error(`load_image: ${what}: image has zero size (${width}x${height})`);
  if (width * height > maxPixels) {
    throw new Error(`load_image: ${what}: ${width}x${height} = ${width * height} pixels exceeds the limit of ${maxPixels} (a possible decompression bomb; raise maxPixels to allow it)`);
  }
  const cmyk = meta.space === "cmyk";
  const converted = cmyk ? pipeline.pipelineColourspace("cmyk").toColourspace("cmyk") : pipeline.toColourspace("srgb");
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await converted.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new Error(`load_image: ${what}: cannot decode the ${meta.format} data (${(e as Error).message.trim()})`);
  }
  return toRgb(raw.data, raw.info, cmyk);
}

/** sharp's raw output (1-4 channels, or CMYK) as interleaved RGB. */
function toRgb(src: Uint8Array, info: OutputInfo, cmyk: boolean): RawImage {
  const { width, height, channels } = info;
  const n = width * height;
  const out = new Uint8Array(n * 3);
  if (cmyk) {
    for (let i = 0; i < n; i++) {
      const keep = 255 - src[i * 4 + 3];
      for (let c = 0; c < 3; c++) {
        // PIL's MULDIV255: (a * b) / 255 rounded, in integers.
        const t = src[i * 4 + c] * keep + 128;
        out[i * 3 + c] = keep - (((t >> 8) + t) >> 8);
      }
    }
  } else if (channels >= 3) {
    if (channels === 3) out.set(src);
    else for (let i = 0; i < n; i++) out.set(src.subarray(i * channels, i * channels + 3), i * 3);
  } else {
    for (let i = 0; i < n; i++) out.fill(src[i * channels], i * 3, i * 3 + 3);
  }
  return new RawImage(out, width, height);
}

// ---------------------------------------------------------------------------------------------
// Resampling. transformers resizes the uint8 image with torchvision `resize(BILINEAR, antialias=True)`.
// On CPUs with AVX2 (and on arm64) torch runs Pillow-SIMD's fixed-point algorithm: per output pixel,
// triangle-filter weights (stretched by the scale when downscaling) computed in double, normalised,
// then quantised to int16 with one precision per axis; a horizontal pass into a uint8 image, then a
// vertical pass; each output is (sum + 2^(p-1)) >> p clamped to 0..255. (Elsewhere torchvision
// resizes in float and rounds, so transformers' own output differs slightly there.) One uint8 level
// is 0.0078 after normalisation, so matching transformers needs this integer arithmetic bit for bit,
// which sharp's (libvips) resize does not give; that is why it is written out here.

/** The taps of one axis: for output i, `count[i]` input pixels from `first[i]` with `weights[i * maxTaps + k]`. */
interface AxisTaps {
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
  maxTaps: number;
  precision: number;
}

function bilinearAntialiasTaps(inSize: number, outSize: number): AxisTaps {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const real = new Float64Array(outSize * maxTaps);
  let maxWeight = 0;
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - lo, 0), maxTaps);
    first[i] = lo;
    count[i] = n;
    let total = 0;
    for (let k = 0; k < n; k++) {
      const w = Math.max(0, 1 - Math.abs((k + lo - center + 0.5) * invScale));
      real[i * maxTaps + k] = w;
      total += w;
    }
    if (total !== 0) {
      for (let k = 0; k < n; k++) {
        const w = real[i * maxTaps + k] / total;
        real[i * maxTaps + k] = w;
        if (w > maxWeight) maxWeight = w;
      }
    }
  }
  // The largest precision (< 22) at which the biggest weight still fits int16 with one bit to spare.
  let precision = 0;
  while (precision < 22 && Math.trunc(0.5 + maxWeight * 2 ** (precision + 1)) < 1 << 15) precision++;
  const weights = new Int32Array(outSize * maxTaps);
  for (let j = 0; j < real.length; j++) weights[j] = Math.trunc(0.5 + real[j] * 2 ** precision);
  return { first, count, weights, maxTaps, precision };
}

/** Resizes like torch `interpolate(uint8, mode="bilinear", antialias=True, align_corners=False)` on CPU. */
export function resizeBilinearAntialias(image: RawImage, height: number, width: number): RawImage {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`resizeBilinearAntialias: target size must be positive integers, got ${height}x${width}`);
  }
  let data = image.data;
  if (width !== image.width) data = resampleRows(data, image.width, image.height, width);
  if (height !== image.height) data = resampleColumns(data, width, image.height, height);
  return data === image.data ? image : new RawImage(data, width, height);
}

function resampleRows(src: Uint8Array, inWidth: number, rows: number, outWidth: number): Uint8Array {
  const { first, count, weights, maxTaps, precision } = bilinearAntialiasTaps(inWidth, outWidth);
  const out = new Uint8Array(rows * outWidth * 3);
  const half = 1 << (precision - 1);
  for (let y = 0; y < rows; y++) {
    const rowIn = y * inWidth * 3;
    const rowOut = y * outWidth * 3;
    for (let x = 0; x < outWidth; x++) {
      let r = half;
      let g = half;
      let b = half;
      const w0 = x * maxTaps;
      let p = rowIn + first[x] * 3;
      for (let k = 0; k < count[x]; k++, p += 3) {
        const w = weights[w0 + k];
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
      }
      const o = rowOut + x * 3;
      out[o] = clampByte(r >> precision);
      out[o + 1] = clampByte(g >> precision);
      out[o + 2] = clampByte(b >> precision);
    }
  }
  return out;
}

function resampleColumns(src: Uint8Array, width: number, inHeight: number, outHeight: number): Uint8Array {
  const { first, count, weights, maxTaps, precision } = bilinearAntialiasTaps(inHeight, outHeight);
  const rowLength = width * 3;
  const out = new Uint8Array(outHeight * rowLength);
  const acc = new Int32Array(rowLength);
  for (let y = 0; y < outHeight; y++) {
    acc.fill(1 << (precision - 1));
    for (let k = 0; k < count[y]; k++) {
      const w = weights[y * maxTaps + k];
      const row = (first[y] + k) * rowLength;
      for (let i = 0; i < rowLength; i++) acc[i] += src[row + i] * w;
    }
    const o = y * rowLength;
    for (let i = 0; i < rowLength; i++) out[o + i] = clampByte(acc[i] >> precision);
  }
  return out;
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}
