// Parity of the native Llama 4 vision tower and multimodal forward with transformers (goldens from
// test/fixtures/make_vision_goldens.py, transformers 5.24, float32, eager attention), driving the
// addon directly. Tolerances: vision encoder hidden states, vision features (vision model output),
// image features (projector output), text hidden states and final logits <= 1e-4 max abs diff (the
// logits' std is asserted > 1, so 1e-4 is a strict bound); greedy ids identical.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { native, NativeModel } from "../sdk/native";
import { maxAbsDiff, std } from "./helpers/compare";
import { modelDir } from "./helpers/fixtures";
import { Golden, readGoldens, readRaw, writeRaw } from "./helpers/safetensors";

const TOL = 1e-4;
const DIR = modelDir("tiny-llama4-vision");
const CASES = [0, 1, 2]; // one tile; 4 tiles + global; two images (2 tiles + global, then 1 tile)
const GREEDY_NEW_TOKENS = 16;
const TILE = 56;

let model: NativeModel;
let g: Record<string, Golden>;

const pixels = (c: number) => g[`case${c}.pixel_values`];
const ids = (c: number) => g[`case${c}.input_ids`].data as Int32Array;
const encode = (c: number, extra: { outputVisionFeatures?: boolean; outputHiddenStates?: boolean } = {}) =>
  model.encodeImages({ pixelValues: pixels(c).data as Float32Array, tiles: pixels(c).shape[0], height: TILE, width: TILE, ...extra });

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

beforeAll(async () => {
  model = await native().loadModel(DIR, { dtype: "float32" });
  g = readGoldens(join(DIR, "goldens.safetensors"));
});

describe("tiny-llama4-vision matches transformers", () => {
  test("the engine reads the vision config", () => {
    expect(model.info().vision).toEqual({
      usable: true, imageTokenId: 500, imageSize: 56, patchSize: 14, numChannels: 3, pixelShuffleRatio: 0.5, tokensPerTile: 4,
    });
  });

  test.each(CASES)("case %i: encoder hidden states, vision features and projector output", async (c) => {
    const out = await encode(c, { outputVisionFeatures: true, outputHiddenStates: true });
    const tiles = pixels(c).shape[0];
    expect(out.tokensPerTile).toBe(4);
    expect(g[`case${c}.vision_features`].shape).toEqual([tiles, 4, 48]);
    expect(g[`case${c}.image_features`].shape).toEqual([tiles * 4, 64]);
    expect(maxAbsDiff(out.hiddenStates!, g[`case${c}.vision_hidden_states`].data)).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.visionFeatures!, g[`case${c}.vision_features`].data)).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.imageFeatures, g[`case${c}.image_features`].data)).toBeLessThanOrEqual(TOL);
  });

  test.each(CASES)("case %i: logits and hidden states of the multimodal forward", async (c) => {
    const { imageFeatures } = await encode(c);
    const input = ids(c);
    const out = await model.forward({ inputIds: input, batch: 1, seqLen: input.length, imageFeatures, outputHiddenStates: true });
    const logits = g[`case${c}.logits`];
    expect(std(logits.data)).toBeGreaterThan(1); // the goldens are not near-constant
    expect(maxAbsDiff(out.logits, logits.data)).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.hiddenStates!, g[`case${c}.hidden_states`].data)).toBeLessThanOrEqual(TOL);
  });

  test.each(CASES)("case %i: greedy 16-token continuation (prefill with image features, then cached steps)", async (c) => {
    const { imageFeatures } = await encode(c);
    const input = ids(c);
    const cache = model.createCache(1);
    let out = await model.forward({ inputIds: input, batch: 1, seqLen: input.length, imageFeatures, cache, logitsToKeep: 1 });
    const generated: number[] = [];
    for (let step = 0; step < GREEDY_NEW_TOKENS; step++) {
      generated.push(argmax(out.logits));
      if (step === GREEDY_NEW_TOKENS - 1) break;
      out = await model.forward({ inputIds: Int32Array.of(generated[step]), batch: 1, seqLen: 1, cache, logitsToKeep: 1 });
    }
    expect(cache.length).toBe(input.length + GREEDY_NEW_TOKENS - 1);
    expect(generated).toEqual(Array.from(g[`case${c}.greedy`].data));
  });

  test("a batch takes image features batch-major: the first row's image tokens get the first rows", async () => {
    const input = ids(0);
    const T = input.length;
    const own = (await encode(0)).imageFeatures;
    const other = (await encode(2)).imageFeatures.slice(-own.length); // the last tile of case 2
    const imageFeatures = new Float32Array(2 * own.length);
    imageFeatures.set(own, 0);
    imageFeatures.set(other, own.length);
    const batch = new Int32Array(2 * T);
    batch.set(input, 0);
    batch.set(input, T);
    const out = await model.forward({ inputIds: batch, batch: 2, seqLen: T, imageFeatures });
    const V = 512;
    const golden = g["case0.logits"].data;
    expect(maxAbsDiff(out.logits.subarray(0, T * V), golden)).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.logits.subarray(T * V), golden)).toBeGreaterThan(0.1);
  });

  test("without image features the image token ids are embedded as tokens", async () => {
    const input = ids(1);
    const out = await model.forward({ inputIds: input, batch: 1, seqLen: input.length });
    const V = 512;
    const first = input.indexOf(500);
    const golden = g["case1.logits"].data;
    // Causal: the positions before the first image token do not see the features; the later ones do.
    expect(maxAbsDiff(out.logits.subarray(0, first * V), golden.subarray(0, first * V))).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.logits.subarray(first * V), golden.subarray(first * V))).toBeGreaterThan(0.1);
  });

  test("cancel() stops encodeImages between layers; the model stays usable", async () => {
    const tile = pixels(0).data as Float32Array;
    const tiles = 200; // milliseconds of work, far longer than the call to cancel() below takes
    const pixelValues = new Float32Array(tiles * tile.length);
    for (let t = 0; t < tiles; t++) pixelValues.set(tile, t * tile.length);
    const pending = model.encodeImages({ pixelValues, tiles, height: TILE, width: TILE });
    model.cancel();
    await expect(pending).rejects.toMatchObject({ name: "AbortError", message: expect.stringMatching(/cancelled/) });
    const out = await encode(0);
    expect(maxAbsDiff(out.imageFeatures, g["case0.image_features"].data)).toBeLessThanOrEqual(TOL);
  });

  test("weight stats count the vision tower and the projector", () => {
    const stats = model.weightStats();
    const bytes = (module: string) => stats.filter((s) => s.module === module).reduce((n, s) => n + s.bytes, 0);
    const { header } = readRaw(join(DIR, "model.safetensors"));
    const mapped = (prefix: string) =>
      Object.entries(header).filter(([name]) => name.startsWith(prefix)).reduce((n, [, e]) => n + e.data_offsets[1] - e.data_offsets[0], 0);
    expect(bytes("vision")).toBe(mapped("vision_model."));
    expect(bytes("projector")).toBe(mapped("multi_modal_projector."));
    expect(stats.some((s) => s.module.includes("unused"))).toBe(false);
  });
});

describe("vision config spellings", () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "llama4-ts-vision-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test("Meta's published keys (vision rope_theta at the top, image_token_id alias) give the same features", async () => {
    copyFileSync(join(DIR, "model.safetensors"), join(scratch, "model.safetensors"));
    const config = JSON.parse(readFileSync(join(DIR, "config.json"), "utf8"));
    config.vision_config.rope_theta = config.vision_config.rope_parameters.rope_theta;
    delete config.vision_config.rope_parameters;
    config.image_token_id = config.image_token_index;
    delete config.image_token_index;
    writeFileSync(join(scratch, "config.json"), JSON.stringify(config));
    const legacy = await native().loadModel(scratch, { dtype: "float32" });
    expect(legacy.info().vision?.imageTokenId).toBe(500);
    const out = await legacy.encodeImages({ pixelValues: pixels(1).data as Float32Array, tiles: 5, height: TILE, width: TILE });
    expect(maxAbsDiff(out.imageFeatures, g["case1.image_features"].data)).toBeLessThanOrEqual(TOL);
  });
});

describe("vision errors are rejected promises naming the cause", () => {
  const tile = new Float32Array(3 * TILE * TILE);
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "llama4-ts-vision-errors-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** A copy of the fixture whose safetensors header is edited. */
  function brokenCopy(name: string, edit: (header: ReturnType<typeof readRaw>["header"]) => void): string {
    const dir = join(scratch, name);
    mkdirSync(dir);
    copyFileSync(join(DIR, "config.json"), join(dir, "config.json"));
    const raw = readRaw(join(DIR, "model.safetensors"));
    edit(raw.header);
    writeRaw(join(dir, "model.safetensors"), raw);
    return dir;
  }

  test("a vision weight of the wrong shape fails the load, naming the tensor", async () => {
    const name = "vision_model.model.layers.1.mlp.fc1.weight";
    const dir = brokenCopy("shape", (h) => {
      h[name].shape = [32, 128];
    });
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(
      `tensor ${name} has shape [32, 128], expected [128, 32] from config.json`,
    );
  });

  test("a missing vision weight fails the load, naming the tensor", async () => {
    const dir = brokenCopy("missing", (h) => {
      h["vision_model.class_embedding_renamed"] = h["vision_model.class_embedding"];
      delete h["vision_model.class_embedding"];
    });
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/: missing tensor vision_model\.class_embedding \(the model config\.json describes needs it\)$/);
  });

  test("a text-only checkpoint has no vision tower", async () => {
    const textOnly = await native().loadModel(modelDir("tiny-llama4-f32"), { dtype: "float32" });
    expect(textOnly.info().vision).toBeNull();
    await expect(textOnly.encodeImages({ pixelValues: tile, tiles: 1, height: TILE, width: TILE })).rejects.toThrow(
      /cannot encode images: .*config\.json has no vision_config: the checkpoint is text-only/,
    );
  });

  test("an inconsistent vision config names the keys, and the text path still loads", async () => {
    const conditional = await native().loadModel(modelDir("tiny-llama4-conditional"), { dtype: "float32" });
    const vision = conditional.info().vision!;
    expect(vision.usable).toBe(false);
    expect(vision.reason).toMatch(/vision_config\.intermediate_size \(48\) must equal vision_config\.hidden_size \/ vision_config\.pixel_shuffle_ratio\^2 \(128\)/);
    expect(conditional.weightStats().filter((s) => s.module.startsWith("vision")).map((s) => s.module)).toEqual(["vision (mapped, unused)"]);
    await expect(conditional.encodeImages({ pixelValues: new Float32Array(3 * 28 * 28), tiles: 1, height: 28, width: 28 })).rejects.toThrow(
      /cannot encode images: .*vision_config\.intermediate_size \(48\) must equal/,
    );
    const out = await conditional.forward({ inputIds: Int32Array.of(1, 5, 7), batch: 1, seqLen: 3 });
    expect(out.logits).toHaveLength(3 * 448);
  });

  test("tiles of the wrong size", async () => {
    await expect(model.encodeImages({ pixelValues: new Float32Array(3 * 28 * 28), tiles: 1, height: 28, width: 28 })).rejects.toThrow(
      /tiles of 28x28 pixels, but the vision tower takes 56x56 \(vision_config\.image_size\): pixel_values must be \[tiles, 3, 56, 56\]/,
    );
  });

  test("pixelValues of the wrong length", async () => {
    await expect(model.encodeImages({ pixelValues: tile, tiles: 2, height: TILE, width: TILE })).rejects.toThrow(
      /pixel_values has 9408 values, expected tiles x channels x height x width = 2 x 3 x 56 x 56 = 18816/,
    );
  });

  test("sizes whose product overflows are refused, not trusted (the engine must not crash)", async () => {
    await expect(model.encodeImages({ pixelValues: new Float32Array(0), tiles: 2 ** 59, height: TILE, width: TILE })).rejects.toThrow(
      /pixel_values has 0 values, expected .* = more than int64 holds/,
    );
    await expect(model.forward({ inputIds: new Int32Array(0), batch: 2 ** 40, seqLen: 2 ** 24 })).rejects.toThrow(/input_ids has 0 values, expected batch x seq_len/);
  });

  test("fewer than one tile", async () => {
    await expect(model.encodeImages({ pixelValues: new Float32Array(0), tiles: 0, height: TILE, width: TILE })).rejects.toThrow(
      /tiles must be >= 1, got 0/,
    );
  });

  test("image features that do not match the image tokens", async () => {
    const input = ids(0); // 4 image tokens
    const imageFeatures = new Float32Array(5 * 64);
    await expect(model.forward({ inputIds: input, batch: 1, seqLen: input.length, imageFeatures })).rejects.toThrow(
      /Image features and image tokens do not match, tokens: 4, features: 5/,
    );
  });

  test("image features for a text-only checkpoint", async () => {
    const textOnly = await native().loadModel(modelDir("tiny-llama4-f32"), { dtype: "float32" });
    await expect(
      textOnly.forward({ inputIds: Int32Array.of(1, 2), batch: 1, seqLen: 2, imageFeatures: new Float32Array(64) }),
    ).rejects.toThrow(/image_features: .*config\.json has no vision_config/);
  });
});
