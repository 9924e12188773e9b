// Engine behaviour beyond numerics: cancellation, threads, kernel sets, dtype conversion, and the
// package entry point as plain Node sees it.
import { beforeAll, describe, expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { join } from "node:path";

import {
  availableKernels, cancelAll, getNumThreads, Llama4ForCausalLM, Llama4ForConditionalGeneration, setNumThreads, simdKernels, torch,
} from "../sdk";
import { maxAbsDiff } from "./helpers/compare";
import { modelDir } from "./helpers/fixtures";
import { readGoldens } from "./helpers/safetensors";

const ROOT = join(__dirname, "..");
const F32 = modelDir("tiny-llama4-f32");

describe("cancellation", () => {
  let model: Llama4ForCausalLM;
  beforeAll(async () => {
    model = await Llama4ForCausalLM.from_pretrained(F32);
  });

  test("cancel() stops a long forward between layers; the model and its cache stay usable", async () => {
    const long = [Array.from({ length: 6000 }, (_, i) => 3 + ((i * 7) % 500))];
    let start = Date.now();
    await model.forward({ input_ids: long, logits_to_keep: 1 });
    const fullMs = Date.now() - start;

    const prefix = await model.forward({ input_ids: [[7, 8, 9]], use_cache: true });
    const cache = prefix.past_key_values!;
    start = Date.now();
    const running = model.forward({ input_ids: long, past_key_values: cache, logits_to_keep: 1 });
    setTimeout(() => model.cancel(), 20);
    await expect(running).rejects.toMatchObject({ name: "AbortError", message: expect.stringMatching(/cancelled/) });
    const cancelledMs = Date.now() - start;
    expect(cancelledMs).toBeLessThan(0.75 * fullMs);

    // The interrupted call did not touch the cache: continuing it equals a fresh full forward.
    expect(cache.get_seq_length()).toBe(3);
    const step = await model.forward({ input_ids: [[10]], past_key_values: cache });
    const full = await model.forward({ input_ids: [[7, 8, 9, 10]], logits_to_keep: 1 });
    expect(maxAbsDiff(step.logits.data, full.logits.data)).toBeLessThanOrEqual(1e-5);
  });

  test("cancelAll() reaches every loaded model (the Jupyter interrupt)", async () => {
    const other = await Llama4ForCausalLM.from_pretrained(F32);
    const long = [Array.from({ length: 6000 }, (_, i) => 3 + ((i * 7) % 500))];
    const a = model.forward({ input_ids: long, logits_to_keep: 1 });
    const b = other.forward({ input_ids: long, logits_to_keep: 1 });
    setTimeout(() => expect(cancelAll()).toBeGreaterThanOrEqual(2), 20);
    await Promise.all([
      expect(a).rejects.toMatchObject({ name: "AbortError" }),
      expect(b).rejects.toMatchObject({ name: "AbortError" }),
    ]);
  });

  test("cancel() does not affect calls started after it", async () => {
    model.cancel();
    const out = await model.forward({ input_ids: [[1, 2]] });
    expect(out.logits.dims).toEqual([1, 2, 512]);
  });
});

describe("threads and kernels", () => {
  test("1 thread and 2 threads give bit-identical logits", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(F32);
    const ids = [Array.from({ length: 30 }, (_, i) => 3 + i * 11)];
    const before = getNumThreads();
    try {
      setNumThreads(1);
      expect(getNumThreads()).toBe(1);
      const one = await model.forward({ input_ids: ids });
      setNumThreads(2);
      const two = await model.forward({ input_ids: ids });
      expect(maxAbsDiff(one.logits.data, two.logits.data)).toBe(0);
    } finally {
      setNumThreads(before);
    }
  });

  test.each(availableKernels())("the %s kernels match transformers too (forced by LLAMA4_TS_KERNELS)", (set) => {
    // A child process (on the compiled package), because the kernel set is chosen once per process.
    const script = `
      const { Llama4ForCausalLM, simdKernels } = require(${JSON.stringify(join(ROOT, "dist", "sdk", "index.js"))});
      Llama4ForCausalLM.from_pretrained(${JSON.stringify(modelDir("tiny-llama4-bf16-sharded"))}).then(async (m) => {
        const ids = JSON.parse(process.argv[1]);
        const out = await m.forward({ input_ids: [ids] });
        process.stdout.write(JSON.stringify({ simd: simdKernels(), logits: Array.from(out.logits.data) }));
      });`;
    const g = readGoldens(join(modelDir("tiny-llama4-bf16-sharded"), "goldens.safetensors"));
    const ids = Array.from(g["prompt2.input_ids"].data);
    const stdout = execFileSync(process.execPath, ["-e", script, JSON.stringify(ids)], {
      env: { ...process.env, LLAMA4_TS_KERNELS: set },
      encoding: "utf8",
    });
    const result = JSON.parse(stdout);
    expect(result.simd).toBe(set);
    expect(maxAbsDiff(result.logits, g["prompt2.logits"].data)).toBeLessThanOrEqual(1e-4);
  });

  test("the best kernel set the CPU has is the default", () => {
    expect(simdKernels()).toBe(availableKernels()[0]);
    if (process.arch === "x64") expect(["avx512", "avx2"]).toContain(simdKernels());
  });

  test("LLAMA4_TS_KERNELS naming a set the CPU lacks is an error naming the sets it has", () => {
    const script = `
      const { simdKernels } = require(${JSON.stringify(join(ROOT, "dist", "sdk", "index.js"))});
      try { simdKernels(); } catch (e) { process.stdout.write(e.message); }`;
    const stdout = execFileSync(process.execPath, ["-e", script], {
      env: { ...process.env, LLAMA4_TS_KERNELS: "neon9" },
      encoding: "utf8",
    });
    expect(stdout).toBe(`LLAMA4_TS_KERNELS=neon9 is not a kernel set this CPU can run (${availableKernels().join(", ")})`);
  });
});

describe("KV cache", () => {
  test.each([
    ["tiny-llama4-f32 (chunk 8: rings inside a page)", F32, 150],
    ["the embedded model (chunk 128: rings of two pages, chunk starts shifted off page boundaries by padding)",
      join(ROOT, "models", "llama4-tiny"), 300],
  ])("%s: cached decoding across pages, padded batch of 2, equals the full forward bit for bit", async (_, dir, L) => {
    // The cache keeps 64 positions a page; a chunked layer keeps a ring of attention_chunk_size slots. Prefill
    // and decode sum every output in the same order, so cached decoding must reproduce the full forward exactly.
    const model = await Llama4ForConditionalGeneration.from_pretrained(dir);
    const prefill = 70, pad = 3;
    const seq = (seed: number) => Array.from({ length: L }, (_, i) => 3 + ((i * 37 + seed * 11) % 400));
    const ids = [[...Array(pad).fill(0), ...seq(1).slice(pad)], seq(2)]; // row 0 left-padded
    const mask = [[...Array(pad).fill(0), ...Array(L - pad).fill(1)], Array(L).fill(1)];
    const V = model.text_config.vocab_size;
    const full = await model.forward({ input_ids: ids, attention_mask: mask });
    const first = await model.forward({
      input_ids: ids.map((r) => r.slice(0, prefill)), attention_mask: mask.map((r) => r.slice(0, prefill)), use_cache: true,
    });
    const cache = first.cache!;
    for (let t = prefill; t < L; t++) {
      const step = await model.forward({ input_ids: ids.map((r) => [r[t]]), attention_mask: mask.map((r) => r.slice(0, t + 1)), cache });
      for (let b = 0; b < 2; b++) {
        const want = full.logits.data.subarray((b * L + t) * V, (b * L + t + 1) * V);
        expect(maxAbsDiff(step.logits.data.subarray(b * V, (b + 1) * V), want), `row ${b} position ${t}`).toBe(0);
      }
    }
    expect(cache.get_seq_length()).toBe(L);
  });
});

describe("dtype", () => {
  test("bfloat16 converts f32 weights once and stays close to float32", async () => {
    const f32 = await Llama4ForCausalLM.from_pretrained(F32, { dtype: "float32" });
    const bf16 = await Llama4ForCausalLM.from_pretrained(F32, { dtype: torch.bfloat16 });
    expect(bf16.dtype).toBe("bfloat16");
    const ids = [[5, 17, 33, 99, 201, 300, 411]];
    const a = await f32.forward({ input_ids: ids });
    const b = await bf16.forward({ input_ids: ids });
    const diff = maxAbsDiff(a.logits.data, b.logits.data);
    // bf16 keeps 8 bits of mantissa: a visible but small change on logits of std ~2.5
    expect(diff).toBeGreaterThan(1e-4);
    expect(diff).toBeLessThan(0.5);
  });
});

describe("matmul precision", () => {
  test('torch.set_float32_matmul_precision("medium") rounds bf16 products\' activations; "highest" is exact again', async () => {
    const BF16 = modelDir("tiny-llama4-bf16-sharded");
    const model = await Llama4ForCausalLM.from_pretrained(BF16);
    const g = readGoldens(join(BF16, "goldens.safetensors"));
    const ids = [Array.from(g["prompt2.input_ids"].data)];
    try {
      torch.set_float32_matmul_precision("medium");
      const medium = await model.forward({ input_ids: ids });
      const diff = maxAbsDiff(medium.logits.data, g["prompt2.logits"].data);
      // bf16 activations (8-bit mantissa) in every product with bf16 weights: visible, but small next to
      // logits of std > 1 (the f32 goldens of transformers on the same weights)
      expect(diff).toBeGreaterThan(1e-4);
      expect(diff).toBeLessThan(0.1);
    } finally {
      torch.set_float32_matmul_precision("highest");
    }
    const highest = await model.forward({ input_ids: ids });
    expect(maxAbsDiff(highest.logits.data, g["prompt2.logits"].data)).toBeLessThanOrEqual(1e-4);
  });
});

describe("package entry point", () => {
  test('plain node can import("llama4-ts") from the repository root', () => {
    const out = execFileSync(
      process.execPath,
      ["-e", 'import("llama4-ts").then((m) => console.log(typeof m.Llama4ForCausalLM.from_pretrained, typeof m.torch.bfloat16))'],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(out.trim()).toBe("function object");
  });
});
