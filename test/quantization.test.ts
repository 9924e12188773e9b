// Quantized weights: compressed-tensors checkpoints (int4 / int8 pack-quantized, FP8 float-quantized), FbgemmFp8Config
// at load, dtype "q8" / "q4" at load and save_pretrained, and the errors for what is not supported.
//
// References (test/fixtures/make_quantized_goldens.py, transformers 5.24 + compressed-tensors 0.20):
// - `a8_*` / `emulated_*` / `f32_*`: transformers' own modules on the checkpoint's dequantized weights, with every
//   quantized Linear's input quantized exactly as the engine does it (int4 / int8: per block of 32 inputs to int8 at
//   amax / 127; FP8: per token to e4m3 at amax / 448, or FbgemmFp8's bounded scale), computed in float32. The engine
//   must equal these within EMULATION_TOL of the logits' spread (max - min); what remains is f32 summation order, and
//   the odd activation that lands on the other side of a rounding tie. An int8 step is 1/127 of its block's largest
//   value, so one such flip moves the logits by up to a few 1e-3 of the spread (it happens once in these fixtures: token
//   7 of the 23-token int4 prompt, whose keys then shift every later row by 2.8e-3); int checkpoints get INT_EMULATION_TOL.
// - `logits_*`: transformers itself. For int4 / int8 checkpoints it keeps activations in float (W4A16 / W8A16) where
//   the engine's integer kernels quantize them to int8 per block, as llama.cpp does; for FP8 it scales a flattened
//   [tokens, hidden] input as one. These differ from the engine by the activation rounding, which on these tiny
//   random models (top-1 / top-2 routing with near-ties) can flip an expert: bounded by TRANSFORMERS_TOL of the spread,
//   a bound a wrong layout or scale exceeds many times over.
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { FbgemmFp8Config, Llama4ForCausalLM, Llama4ForConditionalGeneration } from "../sdk";
import { concat, maxAbsDiff } from "./helpers/compare";
import { FIXTURES, modelDir } from "./helpers/fixtures";
import { dropTensor, Golden, readGoldens, readMetadata, readRaw, writeRaw } from "./helpers/safetensors";

const EMULATION_TOL = 1e-3;
const INT_EMULATION_TOL = 5e-3;
const TRANSFORMERS_TOL = 0.2;
const LENGTHS = [5, 23, 40];

function spread(d: Float32Array | Int32Array): number {
  let lo = Infinity, hi = -Infinity;
  for (const v of d) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return hi - lo;
}

const relative = (a: ArrayLike<number>, golden: Golden) => maxAbsDiff(a, golden.data) / spread(golden.data);

describe.each([
  { name: "tiny-llama4-w4a16", emulation: "a8", dtype: "q4", bits: "int4, groups of 32, bf16 scales" },
  { name: "tiny-llama4-w8a16", emulation: "a8", dtype: "q8", bits: "int8, a scale per channel" },
  { name: "tiny-llama4-fp8-dynamic", emulation: "emulated", dtype: "F8_E4M3", bits: "FP8 with FP8 activations per token" },
])("compressed-tensors $name ($bits) loads as stored", ({ name, emulation, dtype }) => {
  let model: Llama4ForCausalLM;
  let g: Record<string, Golden>;
  beforeAll(async () => {
    model = await Llama4ForCausalLM.from_pretrained(modelDir(name));
    g = readGoldens(join(modelDir(name), "goldens.safetensors"));
  });

  test.each(LENGTHS)("%i-token prompt: logits equal the emulation of the same math, and transformers within the activation rounding", async (n) => {
    const out = await model.forward({ input_ids: [Array.from(g[`input_ids_${n}`].data)] });
    expect(spread(g[`logits_${n}`].data)).toBeGreaterThan(10);
    expect(relative(out.logits.data, g[`${emulation}_logits_${n}`])).toBeLessThanOrEqual(emulation === "a8" ? INT_EMULATION_TOL : EMULATION_TOL);
    expect(relative(out.logits.data, g[`logits_${n}`])).toBeLessThanOrEqual(TRANSFORMERS_TOL);
  });

  test("greedy continuation equals the emulation's", async () => {
    const prompt = Array.from(g["input_ids_5"].data);
    const out = await model.generate({ input_ids: [prompt], max_new_tokens: 32, min_new_tokens: 32, do_sample: false });
    expect(Array.from(out.data.subarray(prompt.length))).toEqual(Array.from(g[`${emulation}_greedy_5`].data));
  });

  test("weights are held in their quantized dtype, not widened", () => {
    const held = model.weight_memory().filter((m) => m.dtype === dtype);
    expect(held.map((m) => m.module).sort()).toEqual(expect.arrayContaining(["experts", "shared_expert"]));
    const floats = model.weight_memory().filter((m) => m.module === "experts" && m.dtype !== dtype);
    expect(floats).toEqual([]);
  });
});

describe.each(["tiny-llama4-f32", "tiny-llama4-bf16-sharded"])("FbgemmFp8Config on %s", (name) => {
  let g: Record<string, Golden>;
  beforeAll(() => {
    g = readGoldens(join(modelDir(name), "fbgemm-fp8-goldens.safetensors"));
  });

  // The goldens name the router in modules_to_not_convert (transformers' FBGEMM path cannot convert it); the engine
  // never converts it, so the default config computes the same.
  test.each([
    ["the goldens' modules_to_not_convert", () => new FbgemmFp8Config({ modules_to_not_convert: ["lm_head", "feed_forward.router"] })],
    ["the default config", () => new FbgemmFp8Config()],
  ])("%s: logits and greedy continuation equal the FP8 emulation", async (_, config) => {
    const model = await Llama4ForCausalLM.from_pretrained(modelDir(name), { quantization_config: config(), dtype: "float32" });
    for (const n of LENGTHS) {
      const out = await model.forward({ input_ids: [Array.from(g[`input_ids_${n}`].data)] });
      expect(relative(out.logits.data, g[`f32_logits_${n}`]), `${n} tokens`).toBeLessThanOrEqual(EMULATION_TOL);
    }
    const prompt = Array.from(g["input_ids_5"].data);
    const out = await model.generate({ input_ids: [prompt], max_new_tokens: 32, min_new_tokens: 32, do_sample: false });
    expect(Array.from(out.data.subarray(prompt.length))).toEqual(Array.from(g["f32_greedy"].data));
    const memory = model.weight_memory();
    expect(memory.filter((m) => m.dtype === "F8_E4M3").map((m) => m.module).sort()).toEqual(
      expect.arrayContaining(["attention", "experts", "shared_expert"]),
    );
    expect(memory.find((m) => m.module === "router")?.dtype).not.toBe("F8_E4M3");
    expect(memory.find((m) => m.module === "lm_head")?.dtype).not.toBe("F8_E4M3");
  });
});

describe("dtype q8 / q4: quantized at load", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test.each(["q8", "q4"] as const)("%s: a cached decode equals the full forward bit for bit", async (dtype) => {
    const model = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"), { dtype });
    const prompt = Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % 500);
    const full = await model.forward({ input_ids: [prompt] });
    const first = await model.forward({ input_ids: [prompt.slice(0, 7)], use_cache: true });
    const parts = [first.logits.data];
    for (let t = 7; t < prompt.length; t++) parts.push((await model.forward({ input_ids: [[prompt[t]]], cache: first.cache! })).logits.data);
    const joined = concat(parts);
    expect(maxAbsDiff(joined, full.logits.data)).toBe(0);
  });

  // test/fixtures/make_saved_quantized_goldens.py loaded these very files (same sha256) with transformers +
  // compressed-tensors: every quantized module decompressed to exactly q x scale of our packing, and it recorded
  // transformers' logits and the a8 emulation of the engine's math on them.
  const saved = readGoldens(join(FIXTURES, "saved-quantized-goldens.safetensors"));
  const savedInfo = JSON.parse(readMetadata(join(FIXTURES, "saved-quantized-goldens.safetensors")).info);

  test.each(["q8", "q4"] as const)("%s: save_pretrained writes the compressed-tensors checkpoint transformers reads, and it loads back to the same logits", async (dtype) => {
    const model = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { dtype });
    const dir = mkdtempSync(join(tmpdir(), "llama4-saved-"));
    dirs.push(dir);
    await model.save_pretrained(dir);
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config.quantization_config.quant_method).toBe("compressed-tensors");
    expect(config.quantization_config.config_groups.group_0.weights).toMatchObject({ num_bits: dtype === "q8" ? 8 : 4, type: "int", group_size: 32 });
    // The rest of config.json byte for byte (transformers rejects 0 where a float field had 0.0).
    expect(readFileSync(join(dir, "config.json"), "utf8").startsWith(readFileSync("models/llama4-tiny/config.json", "utf8").trimEnd().replace(/\}$/, "").trimEnd())).toBe(true);
    const sha = createHash("sha256").update(readFileSync(join(dir, "model.safetensors"))).digest("hex");
    expect(sha).toBe(savedInfo[dtype].model_safetensors_sha256);

    const reloaded = await Llama4ForConditionalGeneration.from_pretrained(dir);
    const ids = [Array.from(saved[`${dtype}.input_ids_0`].data)];
    const [a, b] = [await model.forward({ input_ids: ids }), await reloaded.forward({ input_ids: ids })];
    expect(maxAbsDiff(a.logits.data, b.logits.data)).toBe(0);
    expect(reloaded.weight_memory()).toEqual(model.weight_memory());
    expect(relative(b.logits.data, saved[`${dtype}.a8_logits_0`])).toBeLessThanOrEqual(INT_EMULATION_TOL);
    expect(relative(b.logits.data, saved[`${dtype}.logits_0`])).toBeLessThanOrEqual(TRANSFORMERS_TOL);
    const out = await reloaded.generate({ input_ids: ids, max_new_tokens: 16, min_new_tokens: 16, do_sample: false });
    expect(Array.from(out.data.subarray(ids[0].length))).toEqual(Array.from(saved[`${dtype}.a8_greedy_0`].data));
  });

  test("save_pretrained refuses a model with nothing quantized, and the folder it was loaded from", async () => {
    const plain = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
    const dir = mkdtempSync(join(tmpdir(), "llama4-saved-"));
    dirs.push(dir);
    await expect(plain.save_pretrained(dir)).rejects.toThrow(/holds no quantized weights/);
    const q = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-w4a16"));
    await expect(q.save_pretrained(modelDir("tiny-llama4-w4a16"))).rejects.toThrow(/folder the model was loaded from/);
  });
});

describe("quantization errors name the culprit", () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "llama4-quant-errors-"));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  // A copy of a fixture with its config.json (and optionally its weights) edited.
  function variant(source: string, edit: (config: Record<string, any>) => void, tensors?: (raw: ReturnType<typeof readRaw>) => void): string {
    const dir = mkdtempSync(join(work, `${source}-`));
    cpSync(modelDir(source), dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    edit(config);
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    if (tensors) {
      const raw = readRaw(join(dir, "model.safetensors"));
      tensors(raw);
      writeRaw(join(dir, "model.safetensors"), raw);
    }
    return dir;
  }
  const load = (dir: string, options = {}) => Llama4ForCausalLM.from_pretrained(dir, options);

  test("a quantization method or scheme the engine does not run", async () => {
    await expect(load(variant("tiny-llama4-w4a16", (c) => (c.quantization_config.quant_method = "gptq"))))
      .rejects.toThrow(/quantization_config\.quant_method is "gptq"/);
    await expect(load(variant("tiny-llama4-w4a16", (c) => (c.quantization_config.config_groups.group_0.weights.symmetric = false))))
      .rejects.toThrow(/config_groups\.group_0\.weights\.symmetric is false/);
    await expect(load(variant("tiny-llama4-w4a16", (c) => (c.quantization_config.config_groups.group_0.weights.num_bits = 3))))
      .rejects.toThrow(/config_groups\.group_0\.weights asks for 3-bit int weights/);
    await expect(load(variant("tiny-llama4-w4a16", (c) => (c.quantization_config.config_groups.group_0.weights.group_size = 16))))
      .rejects.toThrow(/group_size is 16/);
    await expect(load(variant("tiny-llama4-fp8-dynamic", (c) => (c.quantization_config.config_groups.group_0.input_activations.dynamic = false))))
      .rejects.toThrow(/input_activations\.dynamic is not true: static activation scales/);
  });

  test("an ignore list naming nothing", async () => {
    await expect(load(variant("tiny-llama4-w4a16", (c) => c.quantization_config.ignore.push("model.layers.9.feed_forward.router"))))
      .rejects.toThrow(/ignore names "model\.layers\.9\.feed_forward\.router", which matches no module/);
  });

  test("a packed tensor of the wrong shape, or a scale missing", async () => {
    const name = "model.layers.0.self_attn.q_proj";
    await expect(load(variant("tiny-llama4-w4a16", () => {}, (raw) => {
      raw.header[`${name}.weight_packed`].shape = [32, 16];
    }))).rejects.toThrow(/tensor model\.layers\.0\.self_attn\.q_proj\.weight_packed has dtype I32 and shape \[32, 16\]/);
    await expect(load(variant("tiny-llama4-w4a16", () => {}, (raw) => {
      dropTensor(raw, `${name}.weight_scale`);
    }))).rejects.toThrow(/missing tensor model\.layers\.0\.self_attn\.q_proj\.weight_scale/);
    await expect(load(variant("tiny-llama4-fp8-dynamic", () => {}, (raw) => {
      dropTensor(raw, "model.layers.0.feed_forward.gate_proj.weight_scale");
    }))).rejects.toThrow(/missing tensor model\.layers\.0\.feed_forward\.gate_proj\.weight_scale for the FP8/);
  });

  test("quantization options that cannot go together, or are not ours", async () => {
    await expect(load(modelDir("tiny-llama4-f32"), { dtype: "q8", quantization_config: new FbgemmFp8Config() }))
      .rejects.toThrow(/dtype "q8" quantizes a float checkpoint at load; it cannot be combined with FbgemmFp8Config/);
    await expect(load(modelDir("tiny-llama4-w4a16"), { quantization_config: new FbgemmFp8Config() }))
      .rejects.toThrow(/already quantized/);
    await expect(load(modelDir("tiny-llama4-w4a16"), { dtype: "q4" })).rejects.toThrow(/cannot be combined with .*quantization_config/);
    expect(() => new FbgemmFp8Config({ activation_scale_ub: -1 })).toThrow(/activation_scale_ub must be a positive number/);
    expect(() => new FbgemmFp8Config({ bits: 4 } as never)).toThrow(/unknown option "bits"/);
    await expect(load(modelDir("tiny-llama4-f32"), { quantization_config: { quant_method: "bitsandbytes" } as never }))
      .rejects.toThrow(/quantization_config: .* is not supported; pass new FbgemmFp8Config\(\)/);
    await expect(load(modelDir("tiny-llama4-f32"), { dtype: "int3" })).rejects.toThrow(/dtype int3 is not supported: use .*"q8", "q4"/);
  });
});
