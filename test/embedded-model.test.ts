// The trained model shipped in models/llama4-tiny: our engine equals transformers on it (goldens
// from test/fixtures/make_embedded_goldens.py: float32 math on the checkpoint's bf16 weights) for
// text, through Llama4ForCausalLM (the text path of the multimodal checkpoint), and for a chat with
// a picture, through AutoProcessor and Llama4ForConditionalGeneration (its small vision tower); it
// is what default_model() and the notebooks use, and it stays within the size budget.
import { beforeAll, describe, expect, test } from "vitest";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

import {
  AutoProcessor,
  AutoTokenizer,
  BatchFeature,
  default_model,
  embedded_model_path,
  Llama4ForCausalLM,
  Llama4ForConditionalGeneration,
  PreTrainedTokenizer,
  Tensor,
} from "../sdk";
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

test("use_mmap: the weights left in the mapped checkpoint give transformers' logits too", async () => {
  const mapped = await Llama4ForCausalLM.from_pretrained(embedded_model_path(), { use_mmap: true });
  const ids = [Array.from(g["prose.input_ids"].data)];
  const [a, b] = [await model.forward({ input_ids: ids }), await mapped.forward({ input_ids: ids })];
  // The default holds the experts in nn.Linear layout, use_mmap in the checkpoint's fused [in, out] one: their
  // products sum in different orders, so the two differ by f32 rounding (3.8e-6 measured), each within 1e-4.
  expect(maxAbsDiff(b.logits.data, g["prose.logits"].data)).toBeLessThanOrEqual(1e-4);
  expect(maxAbsDiff(a.logits.data, b.logits.data)).toBeLessThanOrEqual(2e-5);
  expect(mapped.weight_memory()).toEqual(model.weight_memory());
  // The default copied the experts out of the file (and the other tensors of 2 MiB and more); use_mmap copied nothing.
  const info = (m: Llama4ForCausalLM) => (m as unknown as { engine: { info(): { convertedBytes: number } } }).engine.info();
  expect(info(model).convertedBytes).toBeGreaterThanOrEqual(4 * 2 ** 21);
  expect(info(mapped).convertedBytes).toBe(0);
  await expect(Llama4ForCausalLM.from_pretrained(embedded_model_path(), { use_mmap: "yes" as unknown as boolean })).rejects.toThrow(
    /use_mmap must be true or false, got "yes"/,
  );
});

test("the tokenizer encodes the prompts as transformers did", () => {
  expect(tokenizer.encode("It is a truth universally acknowledged, that a single man in possession of a good fortune")).toEqual(
    Array.from(g["prose.input_ids"].data),
  );
});

describe("a chat with a picture (images/red-circle.png)", () => {
  let vlm: Llama4ForConditionalGeneration;
  let inputs: BatchFeature<Tensor>;

  beforeAll(async () => {
    const processor = await AutoProcessor.from_pretrained(embedded_model_path());
    vlm = await Llama4ForConditionalGeneration.from_pretrained(embedded_model_path());
    const messages = [{
      role: "user",
      content: [
        { type: "image", path: join(FIXTURES, "images", "red-circle.png") },
        { type: "text", text: "What is in this picture?" },
      ],
    }];
    inputs = await processor.apply_chat_template(messages, { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  });

  test("the processor makes transformers' input ids and pixel values (tiles and the global tile)", () => {
    expect(Array.from(inputs.input_ids.data)).toEqual(Array.from(g["image.input_ids"].data));
    const ref = g["image.pixel_values"];
    expect(inputs.pixel_values!.dims).toEqual(ref.shape);
    let max = 0;
    let sum = 0;
    inputs.pixel_values!.data.forEach((v, i) => {
      const d = Math.abs(v - ref.data[i]);
      if (!(d <= max)) max = d; // NaN sticks
      sum += d;
    });
    // transformers rescales and normalises in bfloat16
    expect(max).toBeLessThanOrEqual(1e-2);
    expect(sum / ref.data.length).toBeLessThanOrEqual(1e-3);
  });

  test("logits of the multimodal forward equal transformers' (<= 1e-4)", async () => {
    const out = await vlm.forward({ ...inputs });
    expect(std(g["image.logits"].data)).toBeGreaterThan(1);
    expect(maxAbsDiff(out.logits.data, g["image.logits"].data)).toBeLessThanOrEqual(1e-4);
  });

  test("greedy 32-token continuation equals transformers'", async () => {
    const prompt = inputs.input_ids.dims[1];
    const out = await vlm.generate({ ...inputs, max_new_tokens: 32, min_new_tokens: 32, do_sample: false });
    expect(Array.from(out.data.subarray(prompt))).toEqual(Array.from(g["image.greedy"].data));
  });
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

test("the checkpoint folder stays within 30 MB, every file under 25 MiB", () => {
  const dir = embedded_model_path();
  const sizes = readdirSync(dir).map((f) => statSync(join(dir, f)).size);
  expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(30 * 1024 * 1024);
  expect(Math.max(...sizes)).toBeLessThan(25 * 1024 * 1024);
});
