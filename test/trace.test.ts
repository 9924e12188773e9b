// Tracing: attention probabilities against transformers, routing records that agree with the
// model's own forward pass, expert interventions, memory accounting, and the JSON round trip.
import { beforeAll, describe, expect, test } from "vitest";
import { join } from "node:path";

import { GenerationTrace, Llama4ForCausalLM } from "../sdk";
import { maxAbsDiff, topK } from "./helpers/compare";
import { modelDir } from "./helpers/fixtures";
import { readGoldens } from "./helpers/safetensors";

const F32 = modelDir("tiny-llama4-f32");
const PROMPT = [17, 201, 99, 45, 333, 12, 7, 300, 411, 28, 64];
let model: Llama4ForCausalLM;

beforeAll(async () => {
  model = await Llama4ForCausalLM.from_pretrained(F32, { attn_implementation: "eager" });
});

describe("attention probabilities", () => {
  test.each(["tiny-llama4-f32", "tiny-llama4-bf16-sharded", "tiny-llama4-conditional"])(
    "%s: every layer's eager attention equals transformers' (<= 1e-5)",
    async (name) => {
      const m = await Llama4ForCausalLM.from_pretrained(modelDir(name), { attn_implementation: "eager", dtype: "float32" });
      const g = readGoldens(join(modelDir(name), "goldens.safetensors"));
      const ids = [Array.from(g["prompt1.input_ids"].data)];
      const out = await m.forward({ input_ids: ids, output_attentions: true });
      const golden = g["prompt1.attentions"];
      const [L, heads, T] = golden.shape;
      expect(out.attentions).toHaveLength(L);
      const per = heads * T * T;
      out.attentions!.forEach((a, l) => {
        expect(a.dims).toEqual([1, heads, T, T]);
        expect(maxAbsDiff(a.data, golden.data.subarray(l * per, (l + 1) * per))).toBeLessThanOrEqual(1e-5);
      });
    },
  );

  test("chunked layers see only their chunk, NoPE layers everything before", async () => {
    const out = await model.forward({ input_ids: [PROMPT], output_attentions: [0, 1] });
    const T = PROMPT.length;
    const chunk = model.text_config.attention_chunk_size!;
    const at = (layer: number, q: number, k: number) => out.attentions![layer].data[q * T + k]; // head 0
    const q = T - 1; // position 10: chunk [8, 16)
    for (let k = 0; k < T; k++) {
      const sameChunk = Math.floor(k / chunk) === Math.floor(q / chunk);
      expect(at(0, q, k) > 0).toBe(sameChunk); // layer 0: chunked_attention
      expect(at(1, q, k) > 0).toBe(k <= q); // layer 1: NoPE, full causal
    }
  });

  test("attention probabilities need eager attention, as in transformers", async () => {
    const sdpa = await Llama4ForCausalLM.from_pretrained(F32);
    await expect(sdpa.forward({ input_ids: [PROMPT], output_attentions: true })).rejects.toThrow(
      /output_attentions needs attn_implementation: "eager"/,
    );
  });
});

describe("generate({ output_trace })", () => {
  test("covers prompt and generated tokens, and agrees with a forward over the whole sequence", async () => {
    const out = await model.generate({ input_ids: [PROMPT], max_new_tokens: 6, output_trace: { attention_layers: [1] } });
    const trace = out.trace;
    const all = Array.from(out.sequences.data);
    expect(trace.tokens.map((t) => t.id)).toEqual(all);
    expect(trace.tokens.filter((t) => t.is_prompt)).toHaveLength(PROMPT.length);

    const full = await model.forward({ input_ids: [all], output_router_logits: true, output_attentions: [1] });
    const E = model.text_config.num_local_experts;
    const K = model.text_config.num_experts_per_tok;
    trace.routing.forEach((r, i) => {
      expect(r.layer).toBe(full.moe_layers![i]);
      expect(r.router_logits).toHaveLength(all.length);
      expect(maxAbsDiff(r.router_logits.flat(), full.router_logits![i].data)).toBeLessThanOrEqual(1e-5);
      expect(r.experts.map((e) => e.slice().sort((a, b) => a - b))).toEqual(topK(full.router_logits![i].data, E, K));
      r.scores.forEach((row, t) => row.forEach((s, j) => expect(s).toBeCloseTo(1 / (1 + Math.exp(-r.router_logits[t][r.experts[t][j]])), 6)));
    });
    // attention rows grow one key per position and match the full forward
    const heads = model.text_config.num_attention_heads;
    expect(trace.attention).toHaveLength(heads);
    const T = all.length;
    trace.attention.forEach((map) => {
      expect(map.probs).toHaveLength(T);
      map.probs.forEach((row, q) => {
        expect(row).toHaveLength(q + 1);
        const ref = full.attentions![0].data.subarray((map.head * T + q) * T, (map.head * T + q) * T + q + 1);
        expect(maxAbsDiff(row, ref)).toBeLessThanOrEqual(1e-5);
      });
    });
  });

  test("memory: weights by module add up to the checkpoint, KV cache per layer follows the layer type", async () => {
    const out = await model.generate({ input_ids: [PROMPT], max_new_tokens: 12, output_trace: true });
    const memory = out.trace.memory!;
    const total = memory.weights.reduce((a, w) => a + w.bytes, 0);
    expect(total).toBe(979200); // every tensor of tiny-llama4-f32, in F32
    expect(new Set(memory.weights.map((w) => w.module))).toEqual(
      new Set(["embed_tokens", "lm_head", "norm", "attention", "router", "experts", "shared_expert", "mlp"]),
    );
    expect(memory.steps).toHaveLength(13); // the prompt, then 12 tokens fed back
    const c = model.text_config;
    const perPosition = 2 * c.num_key_value_heads * c.head_dim * 4; // K and V, f32
    const last = memory.steps.at(-1)!;
    const positions = PROMPT.length + 12;
    c.layer_types.forEach((type, l) => {
      const expected = type === "chunked_attention" ? c.attention_chunk_size! * perPosition : positions * perPosition;
      expect(last.kv_cache_bytes_by_layer[l]).toBe(expected);
    });
    expect(memory.steps[0].scratch_peak_bytes).toBeGreaterThan(memory.steps[1].scratch_peak_bytes); // prefill holds more
    expect(last.rss_bytes).toBeGreaterThan(1e6);
  });

  test("the trace round-trips through JSON", async () => {
    const out = await model.generate({ input_ids: [PROMPT], max_new_tokens: 3, output_trace: true });
    const json = JSON.stringify(out.trace);
    const back = GenerationTrace.fromJSON(json);
    expect(back.toJSON()).toEqual(JSON.parse(json));
    expect(back.entropy()).toEqual(out.trace.entropy());
    expect(() => GenerationTrace.fromJSON({ ...JSON.parse(json), version: 2 })).toThrow(/unsupported trace version 2/);
  });

  test("entropy is the entropy of softmax(router logits)", async () => {
    const trace = await model.trace({ input_ids: [PROMPT] });
    const layer = trace.model.moe_layers[0];
    const row = trace.layer(layer).router_logits[3];
    const z = row.map((v) => Math.exp(v));
    const p = z.map((v) => v / z.reduce((a, b) => a + b, 0));
    const h = -p.reduce((a, v) => a + v * Math.log(v), 0);
    expect(trace.entropy(layer)[3]).toBeCloseTo(h, 10);
    expect(trace.entropy(layer)[3]).toBeLessThanOrEqual(Math.log(model.text_config.num_local_experts));
  });
});

describe("expert interventions", () => {
  const layer = 1; // an MoE layer of tiny-llama4-f32 (top-2 of 4)

  test("disabling an expert no token chose changes nothing; disabling a chosen one reroutes and changes the logits", async () => {
    const base = await model.trace({ input_ids: [PROMPT] });
    const used = new Set(base.layer(layer).experts.flat());
    const E = model.text_config.num_local_experts;
    const unused = Array.from({ length: E }, (_, e) => e).filter((e) => !used.has(e));
    const plain = await model.forward({ input_ids: [PROMPT] });
    if (unused.length) {
      const same = await model.forward({ input_ids: [PROMPT], expert_mask: [{ layer, disable: unused }] });
      expect(maxAbsDiff(same.logits.data, plain.logits.data)).toBe(0);
    }
    const victim = base.layer(layer).experts[0][0];
    const masked = await model.trace({ input_ids: [PROMPT], expert_mask: [{ layer, disable: [victim] }] });
    expect(masked.layer(layer).experts.flat()).not.toContain(victim);
    expect(masked.interventions).toEqual([{ layer, disable: [victim] }]);
    // the router logits are the router's own, before the intervention, identical up to this layer
    expect(masked.layer(layer).router_logits).toEqual(base.layer(layer).router_logits);
    const changed = await model.forward({ input_ids: [PROMPT], expert_mask: [{ layer, disable: [victim] }] });
    expect(maxAbsDiff(changed.logits.data, plain.logits.data)).toBeGreaterThan(1e-3);
  });

  test("forcing an expert puts it in every token's top-k", async () => {
    const forced = await model.trace({ input_ids: [PROMPT], expert_mask: [{ layer, force: [3] }] });
    forced.layer(layer).experts.forEach((row) => expect(row).toContain(3));
  });

  test("generate applies the mask at every step", async () => {
    const out = await model.generate({ input_ids: [PROMPT], max_new_tokens: 5, output_trace: true, expert_mask: [{ layer, disable: [0, 1] }] });
    out.trace.layer(layer).experts.forEach((row) => expect(row.slice().sort()).toEqual([2, 3]));
  });

  test("bad masks", async () => {
    await expect(model.forward({ input_ids: [PROMPT], expert_mask: [{ layer: 0, disable: [1] }] })).rejects.toThrow(/layer 0 is not an MoE layer/);
    await expect(model.forward({ input_ids: [PROMPT], expert_mask: [{ layer, disable: [9] }] })).rejects.toThrow(/expert 9 does not exist/);
    await expect(model.forward({ input_ids: [PROMPT], expert_mask: [{ layer, force: [0, 1, 2] }] })).rejects.toThrow(/forces 3 experts/);
    await expect(model.forward({ input_ids: [PROMPT], expert_mask: [{ layer, disable: [0, 1, 2] }] })).rejects.toThrow(/fewer than 2 remain/);
  });
});
