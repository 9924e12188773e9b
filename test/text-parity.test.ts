// Parity of the native Llama 4 text engine with transformers (goldens from
// test/fixtures/make_text_goldens.py, transformers 5.24, float32, eager attention).
// Tolerances: logits / hidden states / router logits <= 1e-4 max abs diff (the logits spread over
// several units: their std is asserted > 1, so 1e-4 is a strict bound); chosen experts and greedy
// ids identical; our cached decode equals our full forward within 1e-5.
import { beforeAll, describe, expect, test } from "vitest";
import { join } from "node:path";

import { Llama4ForCausalLM, Llama4ForConditionalGeneration } from "../sdk";
import { maxAbsDiff, std, topK } from "./helpers/compare";
import { modelDir } from "./helpers/fixtures";
import { Golden, readGoldens } from "./helpers/safetensors";

const TOL = 1e-4;
const CACHE_TOL = 1e-5;
const CHECKPOINTS = [
  { name: "tiny-llama4-f32", cls: Llama4ForCausalLM },
  { name: "tiny-llama4-bf16-sharded", cls: Llama4ForCausalLM },
  { name: "tiny-llama4-conditional", cls: Llama4ForConditionalGeneration },
];
const PROMPTS = [0, 1, 2];

describe.each(CHECKPOINTS)("$name matches transformers", ({ name, cls }) => {
  let model: Llama4ForCausalLM;
  let g: Record<string, Golden>;
  const ids = (p: number) => [Array.from(g[`prompt${p}.input_ids`].data)];

  beforeAll(async () => {
    // float32 math over the checkpoint's own weights (bf16 weights are widened exactly), which is
    // what the goldens ran: transformers in float32 on the same weights.
    model = await (cls as typeof Llama4ForCausalLM).from_pretrained(modelDir(name), { dtype: "float32" });
    g = readGoldens(join(modelDir(name), "goldens.safetensors"));
  });

  test.each(PROMPTS)("prompt %i: logits, every hidden state and router logits", async (p) => {
    const out = await model.forward({ input_ids: ids(p), output_hidden_states: true, output_router_logits: true });
    const golden = g[`prompt${p}.logits`];
    expect(out.logits.dims).toEqual([1, ...golden.shape]);
    expect(std(golden.data)).toBeGreaterThan(1); // the goldens are not near-constant
    expect(maxAbsDiff(out.logits.data, golden.data)).toBeLessThanOrEqual(TOL);

    const hidden = g[`prompt${p}.hidden_states`];
    const L = model.text_config.num_hidden_layers;
    expect(out.hidden_states).toHaveLength(L + 1);
    const per = hidden.data.length / (L + 1);
    out.hidden_states!.forEach((h, i) => {
      expect(maxAbsDiff(h.data, hidden.data.subarray(i * per, (i + 1) * per))).toBeLessThanOrEqual(TOL);
    });

    const router = g[`prompt${p}.router_logits`];
    const [moeLayers, T, E] = router.shape;
    expect(out.router_logits).toHaveLength(moeLayers);
    const k = model.text_config.num_experts_per_tok as number;
    out.router_logits!.forEach((r, i) => {
      const ref = router.data.subarray(i * T * E, (i + 1) * T * E);
      expect(r.dims).toEqual([T, E]);
      expect(maxAbsDiff(r.data, ref)).toBeLessThanOrEqual(TOL);
      expect(topK(r.data, E, k)).toEqual(topK(ref, E, k));
    });
  });

  test.each(PROMPTS)("prompt %i: greedy 32-token continuation", async (p) => {
    const out = await model.generate({ input_ids: ids(p), max_new_tokens: 32, min_new_tokens: 32, do_sample: false });
    const prompt = ids(p)[0];
    expect(out.dims).toEqual([1, prompt.length + 32]);
    expect(Array.from(out.data.subarray(prompt.length))).toEqual(Array.from(g[`prompt${p}.greedy`].data));
  });

  test.each(PROMPTS)("prompt %i: step-by-step cached decode equals the full forward", async (p) => {
    const prompt = ids(p)[0];
    const full = await model.forward({ input_ids: [prompt] });
    const V = model.text_config.vocab_size;
    const prefill = Math.min(3, prompt.length);
    const first = await model.forward({ input_ids: [prompt.slice(0, prefill)], use_cache: true });
    const cache = first.cache!;
    expect(first.past_key_values).toBe(cache); // the older name of the same cache
    const cached = [first.logits.data];
    for (let t = prefill; t < prompt.length; t++) {
      // transformers 5.24's `cache` and its deprecated alias past_key_values, on alternate steps
      const step = await model.forward({ input_ids: [[prompt[t]]], ...(t % 2 ? { cache } : { past_key_values: cache }) });
      cached.push(step.logits.data);
    }
    expect(cache.get_seq_length()).toBe(prompt.length);
    const joined = new Float32Array(prompt.length * V);
    let offset = 0;
    for (const c of cached) {
      joined.set(c, offset);
      offset += c.length;
    }
    expect(maxAbsDiff(joined, full.logits.data)).toBeLessThanOrEqual(CACHE_TOL);
    expect(maxAbsDiff(joined, g[`prompt${p}.cached_logits`].data)).toBeLessThanOrEqual(TOL);
  });

  test("left-padded batch: logits at real tokens and greedy continuation", async () => {
    const input = g["batch.input_ids"];
    const [B, T] = input.shape;
    const rows = (t: Golden) =>
      Array.from({ length: t.shape[0] }, (_, b) => Array.from(t.data.subarray(b * t.shape[1], (b + 1) * t.shape[1])));
    const mask = rows(g["batch.attention_mask"]);
    const out = await model.forward({ input_ids: rows(input), attention_mask: mask, position_ids: rows(g["batch.position_ids"]) });
    const V = model.text_config.vocab_size;
    const ref = g["batch.logits"].data;
    let worst = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        if (!mask[b][t]) continue; // padding positions attend to nothing; transformers' values there are arbitrary
        const o = (b * T + t) * V;
        worst = Math.max(worst, maxAbsDiff(out.logits.data.subarray(o, o + V), ref.subarray(o, o + V)));
      }
    }
    expect(worst).toBeLessThanOrEqual(TOL);

    const gen = await model.generate({ input_ids: rows(input), attention_mask: mask, max_new_tokens: 8, pad_token_id: 0 });
    expect(gen.slice(null, [T, null]).tolist()).toEqual(rows(g["batch.greedy"]));
  });
});
