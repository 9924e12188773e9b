// The trained model shipped in models/llama4-tiny: our engine equals transformers on it (goldens
// from test/fixtures/make_embedded_goldens.py: float32 math on the checkpoint's bf16 weights), it
// is what default_model() and the notebooks use, and it stays within the size budget.
import { beforeAll, describe, expect, test } from "vitest";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

import { AutoTokenizer, default_model, embedded_model_path, Llama4ForCausalLM, PreTrainedTokenizer } from "../sdk";
import { maxAbsDiff, std, topK } from "./helpers/compare";
import { FIXTURES } from "./helpers/fixtures";
import { readGoldens } from "./helpers/safetensors";

const g = readGoldens(join(FIXTURES, "embedded-goldens.safetensors"));
let model: Llama4ForCausalLM;
let tokenizer: PreTrainedTokenizer;

beforeAll(async () => {
  model = await Llama4ForCausalLM.from_pretrained(embedded_model_path());
  tokenizer = await AutoTokenizer.from_pretrained(embedded_model_path());
});

describe.each(["prose", "chat"])("%s prompt", (name) => {
  test("logits and routing equal transformers' (<= 1e-4), the same experts are chosen", async () => {
    const ids = [Array.from(g[`${name}.input_ids`].data)];
    const out = await model.forward({ input_ids: ids, output_router_logits: true });
    expect(std(g[`${name}.logits`].data)).toBeGreaterThan(1);
    expect(maxAbsDiff(out.logits.data, g[`${name}.logits`].data)).toBeLessThanOrEqual(1e-4);
    const router = g[`${name}.router_logits`];
    const [layers, T, E] = router.shape;
    expect(out.router_logits).toHaveLength(layers);
    out.router_logits!.forEach((r, i) => {
      const ref = router.data.subarray(i * T * E, (i + 1) * T * E);
      expect(maxAbsDiff(r.data, ref)).toBeLessThanOrEqual(1e-4);
      expect(topK(r.data, E, 1)).toEqual(topK(ref, E, 1));
    });
  });

  test("greedy 32-token continuation equals transformers'", async () => {
    const ids = Array.from(g[`${name}.input_ids`].data);
    const out = await model.generate({ input_ids: [ids], max_new_tokens: 32, min_new_tokens: 32, do_sample: false });
    expect(Array.from(out.data.subarray(ids.length))).toEqual(Array.from(g[`${name}.greedy`].data));
  });
});

test("the tokenizer encodes the prompts as transformers did", () => {
  expect(tokenizer.encode("It is a truth universally acknowledged, that a single man in possession of a good fortune")).toEqual(
    Array.from(g["prose.input_ids"].data),
  );
});

test("default_model() is the embedded model unless LLAMA4_TS_MODEL says otherwise", () => {
  const saved = process.env.LLAMA4_TS_MODEL;
  try {
    delete process.env.LLAMA4_TS_MODEL;
    expect(default_model()).toBe(embedded_model_path());
    process.env.LLAMA4_TS_MODEL = "meta-llama/Llama-4-Scout-17B-16E-Instruct";
    expect(default_model()).toBe("meta-llama/Llama-4-Scout-17B-16E-Instruct");
  } finally {
    if (saved === undefined) delete process.env.LLAMA4_TS_MODEL;
    else process.env.LLAMA4_TS_MODEL = saved;
  }
});

test("the checkpoint folder stays within 30 MB", () => {
  const dir = embedded_model_path();
  const bytes = readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  expect(bytes).toBeLessThanOrEqual(30 * 1024 * 1024);
});
