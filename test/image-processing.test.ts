// The Llama 4 image processor and image loader against transformers: image-processor-goldens.* hold
// what transformers' Llama4ImageProcessor computed from the images in fixtures/images, each loaded
// from its path by transformers itself (see fixtures/make_image_goldens.py).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { load_image, RawImage } from "../sdk/image_utils";
import {
  find_supported_resolutions,
  get_best_fit,
  get_factors,
  get_max_res_without_distortion,
  Llama4ImageProcessor,
  Llama4ImageProcessorFast,
} from "../sdk/models/llama4/image_processing_llama4";
import { Tensor } from "../sdk/tensor";
import { FIXTURES } from "./helpers/fixtures";
import { FileServer } from "./helpers/file-server";
import { HubServer } from "./helpers/hub-server";
import { readGoldens } from "./helpers/safetensors";

// pixel_values must be within these of transformers' (bfloat16) values. One uint8 level is 2/255 ≈
// 0.0078 after normalisation, so the bounds only hold if the uint8 resampling is reproduced bit for
// bit; it is, and the measured differences are 0.
const MAX_ABS_TOLERANCE = 1e-2;
const MEAN_ABS_TOLERANCE = 1e-3;

const IMAGES = join(FIXTURES, "images");
const image = (name: string) => join(IMAGES, name);

interface Case {
  key: string;
  image: string;
  config: string;
  row_stride: number;
  shape: number[];
  aspect_ratios: number[][];
}
interface Meta {
  configs: Record<string, Record<string, unknown>>;
  images: Record<string, { height: number; width: number; sha256: string }>;
  cases: Case[];
}

const meta: Meta = JSON.parse(readFileSync(join(FIXTURES, "image-processor-goldens.json"), "utf8"));
const goldens = readGoldens(join(FIXTURES, "image-processor-goldens.safetensors"));

/** pixel_values[:, :, ::stride, :], as the goldens store big cases. */
function everyNthRow(pixels: Tensor, stride: number): Float32Array {
  const [tiles, channels, height, width] = pixels.dims;
  const rows = Math.ceil(height / stride);
  const out = new Float32Array(tiles * channels * rows * width);
  let o = 0;
  for (let plane = 0; plane < tiles * channels; plane++) {
    for (let y = 0; y < height; y += stride, o += width) {
      out.set(pixels.data.subarray((plane * height + y) * width, (plane * height + y + 1) * width), o);
    }
  }
  return out;
}

function absDiffs(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = d; // NaN sticks
    sum += d;
  }
  return { max, mean: sum / a.length };
}

let scratch: string;
let hub: HubServer;
let plain: FileServer;
let plainUrl: string;
const HUB_REPO = "test-org/llama4-images";

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "llama4-images-"));
  hub = new HubServer([{
    id: HUB_REPO,
    commits: [{
      sha: "a".repeat(40),
      files: {
        "preprocessor_config.json": JSON.stringify({ image_processor_type: "Llama4ImageProcessorFast", max_patches: 4, size: { height: 56, width: 56 } }),
        "dog.jpg": readFileSync(image("dog.jpg")), // Buffers are served as LFS files: a 302 to the "CDN"
      },
    }],
    refs: { main: "a".repeat(40) },
  }]);
  await hub.start();
  // A plain file server: every fixture image at /<name>, 404 for anything else.
  plain = new FileServer(Object.fromEntries(readdirSync(IMAGES).map((name) => [name, readFileSync(image(name))])));
  plainUrl = await plain.start();
});

afterAll(async () => {
  await hub?.close();
  await plain?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("load_image decodes like transformers", () => {
  test.each(Object.keys(meta.images))("%s: same size and RGB bytes as transformers' loader", async (name) => {
    const img = await load_image(image(name));
    const want = meta.images[name];
    expect([img.height, img.width]).toEqual([want.height, want.width]);
    expect(createHash("sha256").update(img.data).digest("hex")).toBe(want.sha256);
  });

  test("every kind of source gives the pixels of the file", async () => {
    const path = image("portrait.jpg");
    const bytes = readFileSync(path);
    const fromFile = await load_image(path);
    let fetches = 0;
    const countingFetch: typeof fetch = (input, init) => {
      fetches++;
      return fetch(input, init);
    };
    const sources = [
      `${plainUrl}/portrait.jpg`,
      new URL(`${plainUrl}/portrait.jpg`),
      `data:image/jpeg;base64,${bytes.toString("base64")}`,
      `data:image/*;base64,${bytes.toString("base64")}`,
      bytes.toString("base64"),
      bytes,
      new Uint8Array(bytes),
      sharp(bytes),
    ];
    for (const source of sources) {
      const img = await load_image(source, { fetch: countingFetch });
      expect([img.width, img.height]).toEqual([fromFile.width, fromFile.height]);
      expect(Buffer.from(img.data).equals(Buffer.from(fromFile.data))).toBe(true);
    }
    expect(fetches).toBe(2);
    expect(await load_image(fromFile)).toBe(fromFile);
    // a sharp pipeline is taken as it outputs, also when it was made from raw pixels
    const fromRaw = await load_image(sharp(Buffer.from(fromFile.data), { raw: { width: fromFile.width, height: fromFile.height, channels: 3 } }));
    expect(Buffer.from(fromRaw.data).equals(Buffer.from(fromFile.data))).toBe(true);
    const created = await load_image(sharp({ create: { width: 3, height: 2, channels: 3, background: { r: 10, g: 20, b: 30 } } }));
    expect(Array.from(created.data)).toEqual(Array(6).fill([10, 20, 30]).flat());
    // a timeout past what Node's timers hold means no limit, not an immediate abort
    expect((await load_image(`${plainUrl}/portrait.jpg`, { timeout: 1e7 })).width).toBe(fromFile.width);
  });

  test("an http URL that redirects (the Hub's LFS files) loads the same pixels", async () => {
    const url = `${hub.url}/${HUB_REPO}/resolve/main/dog.jpg`;
    const [fromUrl, fromFile] = await Promise.all([load_image(url), load_image(image("dog.jpg"))]);
    expect(Buffer.from(fromUrl.data).equals(Buffer.from(fromFile.data))).toBe(true);
  });
});

describe("Llama4ImageProcessor equals transformers", () => {
  test.each(meta.cases.map((c) => [c.key, c] as const))("%s", async (_key, c) => {
    const processor = new Llama4ImageProcessor(meta.configs[c.config]);
    const out = await processor(image(c.image));
    expect(out.pixel_values.dtype).toBe("float32");
    expect(out.pixel_values.dims).toEqual(c.shape);
    expect(out.aspect_ratios).toEqual(c.aspect_ratios);
    const { max, mean } = absDiffs(everyNthRow(out.pixel_values, c.row_stride), goldens[c.key].data);
    expect(max).toBeLessThanOrEqual(MAX_ABS_TOLERANCE);
    expect(mean).toBeLessThanOrEqual(MEAN_ABS_TOLERANCE);
  });

  test("a nested batch is flattened and its tiles concatenated in order", async () => {
    const processor = new Llama4ImageProcessor(meta.configs.s56_p4);
    const names = ["dog.jpg", "tiny.png", "portrait.jpg"];
    const out = await processor.preprocess([image(names[0]), [image(names[1]), image(names[2])]]);
    const cases = names.map((name) => meta.cases.find((c) => c.key === `${name}:s56_p4`)!);
    expect(out.aspect_ratios).toEqual(cases.map((c) => c.aspect_ratios[0]));
    let first = 0;
    for (const c of cases) {
      const own = out.pixel_values.slice([first, first + c.shape[0]]);
      expect(absDiffs(everyNthRow(own, c.row_stride), goldens[c.key].data).max).toBeLessThanOrEqual(MAX_ABS_TOLERANCE);
      first += c.shape[0];
    }
    expect(out.pixel_values.dims[0]).toBe(first);
  });

  test("per-call settings override the constructor's", async () => {
    const processor = new Llama4ImageProcessor();
    const c = meta.cases.find((x) => x.key === "landscape.jpg:s56_p4_clip_norm")!;
    const out = await processor(image(c.image), { ...meta.configs[c.config], return_tensors: "pt" });
    expect(out.aspect_ratios).toEqual(c.aspect_ratios);
    expect(absDiffs(everyNthRow(out.pixel_values, c.row_stride), goldens[c.key].data).max).toBeLessThanOrEqual(MAX_ABS_TOLERANCE);
    expect(processor.size).toEqual({ height: 336, width: 336 });
  });

  test("the resized size follows transformers' float32 arithmetic (629x629 at 14/6 fills 28x28, not 28x27)", async () => {
    // In double precision 629 * (28 / 629) floors to 27, which would leave a padded (-1) column.
    const white = new RawImage(new Uint8Array(629 * 629 * 3).fill(255), 629, 629);
    const out = await new Llama4ImageProcessor({ size: { height: 14, width: 14 }, max_patches: 6 })(white);
    expect(out.aspect_ratios).toEqual([[2, 2]]);
    expect(Math.min(...out.pixel_values.data)).toBe(1);
  });
});

describe("settings and loading", () => {
  test("transformers' defaults; the Fast name is an alias; instances are callable", () => {
    const processor = new Llama4ImageProcessorFast();
    expect(processor).toBeInstanceOf(Llama4ImageProcessor);
    expect(typeof processor).toBe("function");
    const { size, max_patches, resize_to_max_canvas, do_resize, do_rescale, rescale_factor, do_normalize, image_mean, image_std, do_convert_rgb, resample } = processor;
    expect({ size, max_patches, resize_to_max_canvas, do_resize, do_rescale, rescale_factor, do_normalize, image_mean, image_std, do_convert_rgb, resample }).toEqual({
      size: { height: 336, width: 336 }, max_patches: 16, resize_to_max_canvas: false, do_resize: true, do_rescale: true,
      rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], do_convert_rgb: true, resample: 2,
    });
  });

  test("from_pretrained reads preprocessor_config.json from a directory (unknown keys ignored, options override)", async () => {
    const dir = join(scratch, "local");
    mkdirSync(dir);
    writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
      crop_size: null, data_format: "channels_first", default_to_square: true, do_convert_rgb: true, do_normalize: true, do_rescale: true,
      do_resize: true, image_mean: [0.5, 0.5, 0.5], image_processor_type: "Llama4ImageProcessorFast", image_std: [0.5, 0.5, 0.5],
      max_patches: 16, processor_class: "Llama4Processor", resample: 2, rescale_factor: 0.00392156862745098,
      resize_to_max_canvas: false, size: { height: 336, width: 336 },
    }));
    const processor = await Llama4ImageProcessor.from_pretrained(dir, { max_patches: 4 });
    expect(processor.max_patches).toBe(4);
    expect(processor.size).toEqual({ height: 336, width: 336 });
  });

  test("from_pretrained resolves a Hub repo id through the hub layer", async () => {
    const processor = await Llama4ImageProcessor.from_pretrained(HUB_REPO, { endpoint: hub.url, cache_dir: join(scratch, "cache"), token: "" });
    expect(processor.size).toEqual({ height: 56, width: 56 });
    expect(processor.max_patches).toBe(4);
  });
});

describe("canvas selection (transformers' docstring examples)", () => {
  test("get_factors", () => {
    expect([...get_factors(12)].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 6, 12]);
  });

  test("find_supported_resolutions", () => {
    // The docstring shows these for max_num_chunks=5 but they are the ones of 4 (5 adds 1x5 and 5x1 first).
    expect(find_supported_resolutions(4, { height: 224, width: 224 })).toEqual([
      [224, 896], [448, 448], [224, 224], [896, 224], [224, 672], [672, 224], [224, 448], [448, 224],
    ]);
    expect(find_supported_resolutions(5, { height: 224, width: 224 }).slice(0, 2)).toEqual([[224, 1120], [1120, 224]]);
  });

  test("get_best_fit", () => {
    const candidates: [number, number][] = [[224, 672], [672, 224], [224, 448], [448, 224], [224, 224]];
    expect(get_best_fit([200, 300], candidates)).toEqual([224, 448]);
    expect(get_best_fit([100, 150], candidates)).toEqual([224, 224]); // smallest upscale (1.49), least area
    expect(get_best_fit([100, 150], candidates, true)).toEqual([224, 448]); // largest upscale (2.24)
    expect(get_best_fit([2000, 1000], candidates)).toEqual([448, 224]); // no upscale: the mildest downscale
    expect(get_best_fit([1000, 1000], candidates)).toEqual([224, 224]); // all tie: least area
  });

  test("get_max_res_without_distortion", () => {
    // The docstring says (134, 200) and (450, 338); the code floors, and transformers returns these.
    expect(get_max_res_without_distortion([200, 300], [450, 200])).toEqual([133, 200]);
    expect(get_max_res_without_distortion([800, 600], [450, 1300])).toEqual([450, 337]);
  });
});

describe("bad input is a clear error naming the culprit", () => {
  const write = (name: string, content: string | Buffer) => {
    const path = join(scratch, name);
    writeFileSync(path, content);
    return path;
  };

  /** A PNG of just a header claiming width x height (no pixel data). */
  function pngHeader(width: number, height: number): Buffer {
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(data.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(body));
      return Buffer.concat([length, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(0))), chunk("IEND", Buffer.alloc(0))]);
  }

  test("corrupt bytes", async () => {
    const noise = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919 + 13) % 256));
    await expect(load_image(noise)).rejects.toThrow(
      /image bytes \(1000 bytes\): not a readable image \(.*unsupported image format; readable formats: jpeg, png, webp, gif, tiff, heif, avif\)/,
    );
  });

  test("truncated JPEG", async () => {
    const dog = readFileSync(image("dog.jpg"));
    const path = write("truncated.jpg", dog.subarray(0, Math.floor(dog.length * 0.6)));
    await expect(load_image(path)).rejects.toThrow(new RegExp(`${path}: cannot decode the jpeg data \\(.*premature end`, "i"));
  });

  test.each([
    ["text.txt", "just some text, not an image\n", /not a readable image \(.*unsupported image format/],
    ["document.pdf", "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", /not a readable image \(.*unsupported image format/],
    ["drawing.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>', /unsupported image format "svg"/],
  ])("unsupported format: %s", async (name, content, message) => {
    const path = write(name, content);
    await expect(load_image(path)).rejects.toThrow(path);
    await expect(load_image(path)).rejects.toThrow(message);
  });

  test("zero-size image and empty bytes", async () => {
    const path = write("zero.png", pngHeader(0, 0));
    await expect(load_image(path)).rejects.toThrow(new RegExp(`${path}: not a readable image \\(.*corrupt header`));
    await expect(load_image(Buffer.alloc(0))).rejects.toThrow("image bytes (0 bytes): empty, no image data");
  });

  test("over maxPixels, refused from the header before decoding", async () => {
    const pasta = image("pasta.jpeg");
    await expect(load_image(pasta, { maxPixels: 1_000_000 })).rejects.toThrow(`${pasta}: 1280x1280 = 1638400 pixels exceeds the limit of 1000000`);
    // A header claiming 20000x10000 with no pixel data: the default limit (PIL's) refuses it as a bomb, not as corrupt.
    const bomb = write("bomb.png", pngHeader(20000, 10000));
    await expect(load_image(bomb)).rejects.toThrow(`${bomb}: 20000x10000 = 200000000 pixels exceeds the limit of 178956970`);
  });

  test("missing file", async () => {
    const path = join(scratch, "nowhere", "missing.jpg");
    await expect(load_image(path)).rejects.toThrow(`load_image: ${path}: no such file`);
    // A missing name that could be base64 text is tried as such first, as transformers does.
    const name = "pictures/holidays/beach/sunset0001";
    await expect(load_image(name)).rejects.toThrow(`load_image: "${name}": no such file, and not base64 image data either`);
  });

  test("a directory, a device, a bad file URL", async () => {
    // a long directory path that could also be base64 text is still reported as a directory
    const dir = join(scratch, "a".repeat(40));
    mkdirSync(dir, { recursive: true });
    await expect(load_image(dir)).rejects.toThrow(`load_image: ${dir}: is a directory, not a file`);
    await expect(load_image("/dev/zero")).rejects.toThrow("load_image: /dev/zero: is not a regular file");
    await expect(load_image("file://img/la.png")).rejects.toThrow(/load_image: file:\/\/img\/la\.png: not a usable file URL \(.*host/);
  });

  test("HTTP 404", async () => {
    await expect(load_image(`${plainUrl}/missing.jpg`)).rejects.toThrow(`load_image: ${plainUrl}/missing.jpg: HTTP 404 Not Found`);
  });

  test("wrong argument type", async () => {
    await expect(load_image(42 as never)).rejects.toThrow(/load_image: expected a file path, .* got number 42/);
    await expect(load_image(image("dog.jpg"), { maxPixel: 5 } as never)).rejects.toThrow("did you mean 'maxPixels'?");
  });

  test("the processor names which image of a batch failed", async () => {
    const processor = new Llama4ImageProcessor();
    const missing = join(scratch, "missing.png");
    await expect(processor([image("dog.jpg"), missing, image("tiny.png")])).rejects.toThrow(`Llama4ImageProcessor: image 2 of 3: load_image: ${missing}: no such file`);
    await expect(processor([])).rejects.toThrow("no images given");
  });

  test("unsupported settings", async () => {
    expect(() => new Llama4ImageProcessor({ resample: 3 })).toThrow("resample 3 is not supported; only 2 (PILImageResampling.BILINEAR)");
    const processor = new Llama4ImageProcessor();
    await expect(processor(image("tiny.png"), { resample: 0 })).rejects.toThrow("resample 0 is not supported");
    await expect(processor(image("tiny.png"), { size: { height: 56, width: 112 } })).rejects.toThrow("size must be square");
    await expect(processor(image("tiny.png"), { do_resize: false })).rejects.toThrow("do_resize=false is not supported");
    await expect(processor(image("tiny.png"), { do_rescale: false })).rejects.toThrow("do_normalize without do_rescale is not supported");
    await expect(processor(image("tiny.png"), { max_patch: 4 } as never)).rejects.toThrow("did you mean 'max_patches'?");
  });
});
