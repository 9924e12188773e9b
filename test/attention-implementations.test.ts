// attn_implementation "sdpa" / "flex_attention" (keys in tiles of 128 with an online softmax, fully masked tiles
// skipped) against "eager" (each row's whole score vector, the reference that can return probabilities), on
// prompts that cross many chunks and tiles, with left padding. Exact math both ways: they differ by the f32
// rounding of the online softmax's rescaled partial sums only, a few ulps of the largest logit (which is about 13
// here: 1e-5 is 10 ulps of it); bounded by ULPS ulps of the largest logit, 2e-5 to 2.5e-5 on these fixtures.
// A token decoded with a cache goes through the same tiles as in the full forward: bit-identical logits.
import { afterAll, describe, expect, test } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Llama4ForCausalLM, Llama4ForConditionalGeneration } from "../sdk";
import { concat, maxAbsDiff } from "./helpers/compare";
import { modelDir } from "./helpers/fixtures";
import { type RawEntry, readRaw, writeRaw } from "./helpers/safetensors";

const ULPS = 20;
const largest = (x: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
};
const tolerance = (ref: ArrayLike<number>) => ULPS * 2 ** (Math.floor(Math.log2(largest(ref))) - 23);

function promptIds(n: number, vocab: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + seed * 104729) % (vocab - 3)));
}

// The fixtures' heads are 16 wide, under the kernels' kDotHeadDim (64), from which scores are dot products per key
// rather than a GEMM against transposed keys. This one is tiny-llama4-f32 with 128-wide heads (Scout's): its attention
// projections are replaced by seeded random ones, everything else kept.
const scratch = mkdtempSync(join(tmpdir(), "llama4-ts-wide-heads-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
function wideHeadModel(): string {
  const source = modelDir("tiny-llama4-f32"), headDim = 128;
  const config = JSON.parse(readFileSync(join(source, "config.json"), "utf8"));
  const { hidden_size: H, num_attention_heads: heads, num_key_value_heads: kvHeads } = config;
  config.head_dim = headDim;
  writeFileSync(join(scratch, "config.json"), JSON.stringify(config));
  const { header, data } = readRaw(join(source, "model.safetensors"));
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * (2 / Math.sqrt(H));
  const shapes: Record<string, number[]> = { q_proj: [heads * headDim, H], k_proj: [kvHeads * headDim, H],
    v_proj: [kvHeads * headDim, H], o_proj: [H, heads * headDim] };
  const out: Record<string, RawEntry> = {}, pieces: Buffer[] = [];
  let offset = 0;
  for (const [name, entry] of Object.entries(header)) {
    const projection = /self_attn\.(\w_proj)\.weight$/.exec(name)?.[1];
    const shape = projection ? shapes[projection] : entry.shape;
    const bytes = projection ? Buffer.from(Float32Array.from({ length: shape[0] * shape[1] }, random).buffer)
      : data.subarray(entry.data_offsets[0], entry.data_offsets[1]);
    out[name] = { dtype: entry.dtype, shape, data_offsets: [offset, offset + bytes.length] };
    pieces.push(bytes);
    offset += bytes.length;
  }
  writeRaw(join(scratch, "model.safetensors"), { header: out, data: Buffer.concat(pieces) });
  return scratch;
}

describe.each([
  { name: "tiny-llama4-f32 with 128-wide heads", dir: wideHeadModel(), kv_cache_dtype: "float32" as const },
  { name: "tiny-llama4-f32 with 128-wide heads", dir: scratch, kv_cache_dtype: "int8" as const },
])("$name, $kv_cache_dtype KV cache: scores as dot products per key", ({ dir, kv_cache_dtype }) => {
  test("sdpa = eager over 300 tokens (3 key tiles), and cached decode = full forward bit for bit", async () => {
    const load = (attn_implementation: "eager" | "sdpa") => Llama4ForCausalLM.from_pretrained(dir, { attn_implementation, kv_cache_dtype });
    const [eager, sdpa] = [await load("eager"), await load("sdpa")];
    const ids = promptIds(300, eager.text_config.vocab_size, 7);
    const ref = await eager.forward({ input_ids: [ids] });
    const full = await sdpa.forward({ input_ids: [ids] });
    // int8: an ulp of difference upstream can move a key across a rounding boundary of its code (see below; measured
    // 0.02% of the spread)
    const bound = kv_cache_dtype === "int8" ? 0.002 * 2 * largest(ref.logits.data) : tolerance(ref.logits.data);
    expect(maxAbsDiff(full.logits.data, ref.logits.data)).toBeLessThanOrEqual(bound);
    for (const [model, whole] of [[sdpa, full], [eager, ref]] as const) {
      const cache = model.new_cache(1);
      const parts = [(await model.forward({ input_ids: [ids.slice(0, 200)], cache })).logits.data];
      parts.push((await model.forward({ input_ids: [ids.slice(200, 290)], cache })).logits.data);
      for (let t = 290; t < 300; t++) parts.push((await model.forward({ input_ids: [[ids[t]]], cache })).logits.data);
      expect(maxAbsDiff(concat(parts), whole.logits.data)).toBe(0);
    }
  });
});

describe.each([
  { name: "tiny-llama4-f32", cls: Llama4ForCausalLM, length: 300 },
  { name: "tiny-llama4-bf16-sharded", cls: Llama4ForCausalLM, length: 300 },
  { name: "tiny-llama4-conditional", cls: Llama4ForConditionalGeneration, length: 300 },
])("$name: sdpa and flex_attention equal eager", ({ name, cls, length }) => {
  test("a long left-padded batch", async () => {
    const load = (attn_implementation: "eager" | "sdpa" | "flex_attention") =>
      (cls as typeof Llama4ForCausalLM).from_pretrained(modelDir(name), { dtype: "float32", attn_implementation });
    const [eager, sdpa, flex] = await Promise.all([load("eager"), load("sdpa"), load("flex_attention")]);
    const V = eager.text_config.vocab_size;
    const ids = [promptIds(length, V, 1), promptIds(length, V, 2)];
    const mask = [Array(length).fill(1), [...Array(37).fill(0), ...Array(length - 37).fill(1)]];
    ids[1].fill(0, 0, 37);
    const ref = await eager.forward({ input_ids: ids, attention_mask: mask });
    for (const model of [sdpa, flex]) {
      const out = await model.forward({ input_ids: ids, attention_mask: mask });
      // padded positions attend to nothing; compare the real ones
      let worst = 0;
      for (let b = 0; b < 2; b++)
        for (let t = b === 1 ? 37 : 0; t < length; t++) {
          const o = (b * length + t) * V;
          worst = Math.max(worst, maxAbsDiff(out.logits.data.subarray(o, o + V), ref.logits.data.subarray(o, o + V)));
        }
      expect(worst).toBeLessThanOrEqual(tolerance(ref.logits.data));
    }
  });
});

test("the embedded model over 700 tokens (chunks of 128, 6 key tiles on its full-attention layers): sdpa = eager, and cached decode = full forward bit for bit", async () => {
  const dir = "models/llama4-tiny";
  const eager = await Llama4ForConditionalGeneration.from_pretrained(dir, { attn_implementation: "eager" });
  const sdpa = await Llama4ForConditionalGeneration.from_pretrained(dir, { attn_implementation: "sdpa" });
  const ids = promptIds(700, eager.text_config.vocab_size, 3);
  const ref = await eager.forward({ input_ids: [ids] });
  const full = await sdpa.forward({ input_ids: [ids] });
  expect(maxAbsDiff(full.logits.data, ref.logits.data)).toBeLessThanOrEqual(tolerance(ref.logits.data));
  // Prefill 650 in two pieces (the second starting mid-tile), then token by token.
  const first = await sdpa.forward({ input_ids: [ids.slice(0, 300)], use_cache: true });
  const cache = first.cache!;
  const parts = [first.logits.data, (await sdpa.forward({ input_ids: [ids.slice(300, 650)], cache })).logits.data];
  for (let t = 650; t < 700; t++) parts.push((await sdpa.forward({ input_ids: [[ids[t]]], cache })).logits.data);
  const joined = concat(parts);
  expect(maxAbsDiff(joined, full.logits.data)).toBe(0);
});

test("a prompt prefilled in pieces through the cache holds the same working memory for every piece, however long the context", async () => {
  // sdpa holds one key tile of scores per work item; eager holds each row's scores over every key, growing with it.
  const sdpa = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny");
  const eager = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { attn_implementation: "eager" });
  const ids = promptIds(16 * 256, sdpa.text_config.vocab_size, 4);
  for (const [model, grows] of [[sdpa, false], [eager, true]] as const) {
    const cache = model.new_cache(1);
    const peaks: number[] = [];
    for (let p = 0; p < ids.length; p += 256) {
      const out = await model.forward({ input_ids: [ids.slice(p, p + 256)], cache, logits_to_keep: 1 });
      peaks.push(out.scratch_peak_bytes);
    }
    if (grows) expect(peaks.at(-1)!).toBeGreaterThan(2 * peaks[0]);
    else expect(new Set(peaks).size).toBe(1);
  }
});

// kv_cache_dtype "bfloat16": keys and values rounded to bf16 (8 significant bits, relative error up to 2^-9) as they
// are computed. Against the f32 cache the logits move by that rounding carried through eight layers and their
// routing, bounded here at 2% of the logits' spread (measured: 0.9% on this 400-token prompt); the cache takes half
// the bytes, and a cached decode is still the full forward bit for bit.
test("a bf16 KV cache: half the bytes, logits within its rounding of the f32 cache's, cached decode = full forward", async () => {
  const f32 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny");
  const bf16 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { kv_cache_dtype: "bfloat16" });
  const ids = promptIds(400, f32.text_config.vocab_size, 5);
  const [a, b] = [await f32.forward({ input_ids: [ids] }), await bf16.forward({ input_ids: [ids] })];
  const spread = largest(a.logits.data) * 2;
  const diff = maxAbsDiff(a.logits.data, b.logits.data);
  expect(diff).toBeGreaterThan(0); // the rounding happened
  expect(diff / spread).toBeLessThanOrEqual(0.02);
  const cache = bf16.new_cache(1);
  const parts = [(await bf16.forward({ input_ids: [ids.slice(0, 390)], cache })).logits.data];
  for (let t = 390; t < 400; t++) parts.push((await bf16.forward({ input_ids: [[ids[t]]], cache })).logits.data);
  const joined = concat(parts);
  expect(maxAbsDiff(joined, b.logits.data)).toBe(0);
  const f32Cache = f32.new_cache(1);
  await f32.forward({ input_ids: [ids], cache: f32Cache });
  const bytes = (c: typeof cache) => c.native.layerBytes().reduce((s: number, x: number) => s + x, 0);
  expect(bytes(cache) * 2).toBe(bytes(f32Cache));
  await expect(Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { kv_cache_dtype: "int4" as never }))
    .rejects.toThrow(/kv_cache_dtype "int4" is not supported: use "float32", "bfloat16", "int8"/);
});

// kv_cache_dtype "int8": each token's keys (and values) of one head, head_dim elements, share one scale, max|x| / 127;
// an element moves by at most half a step, max|x| / 254 (0.4% of its row's largest). Against the f32 cache the logits
// move by that through eight layers and their routing, bounded here at 4% of the logits' spread (measured: 2.4%
// on this 400-token prompt; bf16's is 0.9%). A cached decode is the full forward bit for bit; the cache takes a quarter of the f32 bytes plus 4 bytes of scale per head_dim (32 here) elements.
test("an int8 KV cache: a quarter of the bytes plus scales, logits within its rounding of the f32 cache's, eager = sdpa, cached decode = full forward", async () => {
  const f32 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny");
  const int8 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { kv_cache_dtype: "int8" });
  const eager = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { kv_cache_dtype: "int8", attn_implementation: "eager" });
  const ids = promptIds(400, f32.text_config.vocab_size, 5);
  const [a, b, e] = [await f32.forward({ input_ids: [ids] }), await int8.forward({ input_ids: [ids] }), await eager.forward({ input_ids: [ids] })];
  const spread = largest(a.logits.data) * 2;
  const diff = maxAbsDiff(a.logits.data, b.logits.data);
  expect(diff).toBeGreaterThan(0);
  expect(diff / spread).toBeLessThanOrEqual(0.04);
  // eager widens the int8 rows through its own path. Not within ULPS of sdpa: an ulp of difference upstream can move a
  // key across a rounding boundary of its int8 code. Bounded at 0.2% of the spread (measured: 0.003%).
  expect(maxAbsDiff(b.logits.data, e.logits.data) / spread).toBeLessThanOrEqual(0.002);
  const cache = int8.new_cache(1);
  const parts = [(await int8.forward({ input_ids: [ids.slice(0, 390)], cache })).logits.data];
  for (let t = 390; t < 400; t++) parts.push((await int8.forward({ input_ids: [[ids[t]]], cache })).logits.data);
  expect(maxAbsDiff(concat(parts), b.logits.data)).toBe(0);
  // The same cache made by the f32 model (new_cache's kv_cache_dtype) computes the same as the int8 model's.
  const borrowed = f32.new_cache(1, "int8");
  expect(maxAbsDiff((await f32.forward({ input_ids: [ids], cache: borrowed })).logits.data, b.logits.data)).toBe(0);
  const f32Cache = f32.new_cache(1);
  await f32.forward({ input_ids: [ids], cache: f32Cache });
  const bytes = (c: typeof cache) => c.native.layerBytes().reduce((s: number, x: number) => s + x, 0);
  const D = f32.text_config.head_dim;
  expect(bytes(cache)).toBe(bytes(f32Cache) / 4 + (bytes(f32Cache) / 4 / D) * 4);
});

test("generate with cache_implementation \"quantized\" decodes through an int8 cache: the tokens of a model loaded with kv_cache_dtype int8", async () => {
  const f32 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny");
  const int8 = await Llama4ForConditionalGeneration.from_pretrained("models/llama4-tiny", { kv_cache_dtype: "int8" });
  const input_ids = [promptIds(200, f32.text_config.vocab_size, 6)];
  const quantized = await f32.generate({ input_ids, max_new_tokens: 12, do_sample: false, cache_implementation: "quantized",
    cache_config: { backend: "quanto", nbits: 8 }, return_dict_in_generate: true, output_logits: true });
  const reference = await int8.generate({ input_ids, max_new_tokens: 12, do_sample: false, return_dict_in_generate: true, output_logits: true });
  expect(quantized.sequences.tolist()).toEqual(reference.sequences.tolist());
  expect(maxAbsDiff(concat(quantized.logits!.map((l) => l.data)), concat(reference.logits!.map((l) => l.data)))).toBe(0);
  await expect(f32.generate({ input_ids, max_new_tokens: 2, cache_implementation: "quantized", cache_config: { backend: "quanto", nbits: 4 } }))
    .rejects.toThrow(/cache_config.nbits = 4 is not supported: the quantized KV cache holds int8/);
  await expect(f32.generate({ input_ids, max_new_tokens: 2, cache_config: { nbits: 8 } }))
    .rejects.toThrow(/cache_config is only read with cache_implementation "quantized"/);
  expect(() => f32.new_cache(1, "fp8" as never)).toThrow(/new_cache: kv_cache_dtype "fp8" is not supported/);
});
