// The SDK's multimodal path on the tiny instruct checkpoint (real tokenizer and processor files,
// random weights, a small vision tower): the ways of feeding images agree with each other (pixel
// values vs precomputed features, one prefill vs pieces, a batch vs its rows), and bad input is
// refused with a message naming it. Numerical parity with transformers is in vision-parity.test.ts
// (engine) and docs-examples.test.ts (the whole chain).
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";

import { AutoTokenizer, Llama4ForCausalLM, Llama4ForConditionalGeneration, Llama4Processor, load_image, Tensor } from "../sdk";
import { imageAttentionData } from "../viz";
import { FIXTURES, modelDir } from "./helpers/fixtures";

const INSTRUCT = modelDir("tiny-llama4-instruct");
const dog = join(FIXTURES, "images", "dog.jpg");
const pasta = join(FIXTURES, "images", "pasta.jpeg");

let processor: Llama4Processor;
let model: Llama4ForConditionalGeneration;

beforeAll(async () => {
  const tokenizer = await AutoTokenizer.from_pretrained(join(FIXTURES, "llama4-tokenizer"));
  processor = await Llama4Processor.from_pretrained(INSTRUCT, { tokenizer });
  model = await Llama4ForConditionalGeneration.from_pretrained(INSTRUCT);
});

const chat = (image: string, text: string) => [{ role: "user", content: [{ type: "image", path: image }, { type: "text", text }] }];
const newIds = (out: Tensor, prompt: number) => (out.slice(null, [prompt, null]).tolist() as number[][]);

test("vision features: [tiles, tokens per tile, vision_output_dim]; projected: one row per <|patch|>", async () => {
  const inputs = await processor.apply_chat_template(chat(dog, "Describe."), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const tiles = inputs.pixel_values!.dims[0];
  const vision = await model.get_image_features(inputs.pixel_values!);
  expect(vision.dims).toEqual([tiles, 4, 32]);
  const projected = await model.embed_images(inputs.pixel_values!);
  const patches = Array.from(inputs.input_ids.data).filter((id) => id === model.image_token_id).length;
  expect(projected.dims).toEqual([patches, model.text_config.hidden_size]);
  expect(patches).toBe(tiles * 4);
});

test("pixel_values and the same features passed as image_features give the same logits", async () => {
  const inputs = await processor.apply_chat_template(chat(pasta, "What is this?"), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const a = await model.forward({ ...inputs, logits_to_keep: 1 });
  const b = await model.forward({ input_ids: inputs.input_ids, image_features: await model.embed_images(inputs.pixel_values!), logits_to_keep: 1 });
  const maxDiff = (x: Tensor, y: Tensor) => (x.data as Float32Array).reduce((m, v, i) => Math.max(m, Math.abs(v - y.data[i])), 0);
  expect(maxDiff(a.logits, b.logits)).toBe(0);
  // and the images matter: without them the <|patch|> tokens are plain tokens
  const plain = await model.forward({ input_ids: inputs.input_ids, logits_to_keep: 1 });
  expect(maxDiff(a.logits, plain.logits)).toBeGreaterThan(1e-3);
});

test("a prompt prefilled in pieces generates what one prefill does", async () => {
  const inputs = await processor.apply_chat_template(chat(pasta, "What is on the plate?"), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const prompt = inputs.input_ids.dims[1];
  const whole = await model.generate({ ...inputs, max_new_tokens: 12, do_sample: false });
  const pieces = await model.generate({ ...inputs, max_new_tokens: 12, do_sample: false, prefill_chunk_size: 7 });
  expect(newIds(pieces, prompt)).toEqual(newIds(whole, prompt));
});

test("a follow-up turn continues from the returned cache (no pixel_values) as a fresh generate on the whole chat does", async () => {
  const inputs = await processor.apply_chat_template(chat(dog, "Describe."), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const first = await model.generate({ ...inputs, max_new_tokens: 6, do_sample: false, return_dict_in_generate: true });
  const sequence = first.sequences.tolist() as number[][];
  // every token but the last generated one is cached, as in transformers; past_key_values is its older name
  expect(first.cache!.get_seq_length()).toBe(sequence[0].length - 1);
  expect(first.past_key_values).toBe(first.cache);
  const followUp = processor.tokenizer.encode("<|eot|><|header_start|>user<|header_end|>\n\nAnd the colour?", { add_special_tokens: false });
  const longer = [[...sequence[0], ...followUp]];
  const continued = await model.generate({ input_ids: longer, cache: first.cache, max_new_tokens: 8, do_sample: false });
  const fresh = await model.generate({ input_ids: longer, pixel_values: inputs.pixel_values, max_new_tokens: 8, do_sample: false });
  expect(newIds(continued, longer[0].length)).toEqual(newIds(fresh, longer[0].length));
  // the cache was extended in place by the follow-up; one that holds more than the input is refused
  expect(first.cache!.get_seq_length()).toBeGreaterThan(longer[0].length);
  await expect(model.generate({ input_ids: [sequence[0].slice(0, 5)], past_key_values: first.cache, max_new_tokens: 2 })).rejects.toThrow(
    /the cache already holds \d+ tokens but input_ids has 5: input_ids must be the whole sequence/,
  );
  await expect(model.generate({ input_ids: longer, cache: first.cache, past_key_values: first.cache })).rejects.toThrow(
    /generate: pass cache or past_key_values \(its older name\), not both/,
  );
});

test("a follow-up turn with a new image: the cache holds the first image, pixel_values give the new one", async () => {
  const inputs = await processor.apply_chat_template(chat(dog, "Describe."), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const first = await model.generate({ ...inputs, max_new_tokens: 4, do_sample: false, return_dict_in_generate: true });
  const turn = await processor({
    text: "<|eot|><|header_start|>user<|header_end|>\n\n<|image|>And this one?<|eot|><|header_start|>assistant<|header_end|>\n\n",
    images: [pasta], add_special_tokens: false, return_tensors: "pt",
  });
  const longer = [[...(first.sequences.tolist() as number[][])[0], ...(turn.input_ids.tolist() as number[][])[0]]];
  const continued = await model.generate({ input_ids: longer, cache: first.cache, pixel_values: turn.pixel_values, max_new_tokens: 6, do_sample: false });
  const [a, b] = [await model.embed_images(inputs.pixel_values!), await model.embed_images(turn.pixel_values!)];
  const both = new Float32Array(a.data.length + b.data.length);
  both.set(a.data as Float32Array);
  both.set(b.data as Float32Array, a.data.length);
  const features = new Tensor("float32", both, [a.dims[0] + b.dims[0], a.dims[1]]);
  const fresh = await model.generate({ input_ids: longer, image_features: features, max_new_tokens: 6, do_sample: false });
  expect(newIds(continued, longer[0].length)).toEqual(newIds(fresh, longer[0].length));
  // a trace records whole sequences, so it cannot start from a filled cache
  await expect(model.generate({ input_ids: continued.tolist() as number[][], cache: first.cache, output_trace: true })).rejects.toThrow(
    /output_trace records a whole sequence/,
  );
});

test("num_return_sequences repeats a prompt's image features with it", async () => {
  const inputs = await processor.apply_chat_template(chat(dog, "Describe."), { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const prompt = inputs.input_ids.dims[1];
  const one = newIds(await model.generate({ ...inputs, max_new_tokens: 8, do_sample: false }), prompt)[0];
  const two = newIds(await model.generate({ ...inputs, max_new_tokens: 8, do_sample: true, top_k: 1, num_return_sequences: 2 }), prompt);
  expect(two).toEqual([one, one]);
});

test("a left-padded batch of two prompts with images generates what each prompt does alone", async () => {
  const texts = ["<|image|>Tell me about this.", "Here is a photo: <|image|> What do you see in it, in detail?"];
  const images = [dog, pasta];
  const batch = await processor({ text: texts, images, padding: true, return_tensors: "pt" });
  const width = batch.input_ids.dims[1];
  const together = newIds(await model.generate({ ...batch, max_new_tokens: 8, do_sample: false }), width);
  for (let i = 0; i < 2; i++) {
    const single = await processor({ text: texts[i], images: [images[i]], return_tensors: "pt" });
    const alone = newIds(await model.generate({ ...single, max_new_tokens: 8, do_sample: false }), single.input_ids.dims[1])[0];
    expect(together[i]).toEqual(alone);
  }
});

test("a traced prompt with an image: attention on its patches, laid out by processor.image_layout", async () => {
  const eager = await Llama4ForConditionalGeneration.from_pretrained(INSTRUCT, { attn_implementation: "eager" });
  const full = eager.text_config.layer_types.indexOf("full_attention");
  const image = await load_image(dog);
  const inputs = await processor.apply_chat_template(
    [{ role: "user", content: [{ type: "image", image }, { type: "text", text: "Describe." }] }],
    { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" },
  );
  const trace = await eager.trace({ ...inputs, attention_layers: [full] });
  const last = trace.tokens.length - 1;
  const data = imageAttentionData(trace, { layer: full, layout: processor.image_layout(image) });
  expect(data.queries).toEqual([last]);
  expect(data.positions).toHaveLength(17 * 4);
  // The grids hold exactly the probabilities the last token gives the patch positions, averaged over heads.
  const heads = trace.attention.filter((a) => a.layer === full);
  const expected = data.positions.map((pos) => heads.reduce((sum, a) => sum + a.probs[last][pos], 0) / heads.length);
  const laidOut = [...data.tiles!.flatMap((row, r) => row.map((v, c) => ({ v, k: (Math.floor(r / 2) * 4 + Math.floor(c / 2)) * 4 + (r % 2) * 2 + (c % 2) }))),
    ...data.global.flatMap((row, r) => row.map((v, c) => ({ v, k: 16 * 4 + r * 2 + c })))];
  for (const { v, k } of laidOut) expect(v).toBeCloseTo(expected[k], 12);
});

describe("bad input", () => {
  test("pixel_values of the wrong tile size", async () => {
    const wrong = new Tensor("float32", new Float32Array(2 * 3 * 28 * 28), [2, 3, 28, 28]);
    await expect(model.forward({ input_ids: [[1, 2]], pixel_values: wrong })).rejects.toThrow(
      /pixel_values must be \[tiles, 3, 56, 56\] \(this model's vision image_size is 56\), got \[2, 3, 28, 28\]/,
    );
  });
  test("pixel_values that are not a Tensor", async () => {
    await expect(model.forward({ input_ids: [[1, 2]], pixel_values: [[1]] as unknown as Tensor })).rejects.toThrow(
      /pixel_values must be the processor's float32 Tensor \[tiles, 3, 56, 56\]/,
    );
  });
  test("more image features than <|patch|> tokens", async () => {
    const inputs = await processor({ text: "<|image|>hi", images: [dog], return_tensors: "pt" });
    await expect(model.forward({ input_ids: [[200000, 1556]], pixel_values: inputs.pixel_values })).rejects.toThrow(
      /image features and image tokens do not match: input_ids has 0 image tokens \(id 200092\) but the images give 68 features/,
    );
    await expect(model.generate({ input_ids: [[200000, 1556]], pixel_values: inputs.pixel_values, max_new_tokens: 2 })).rejects.toThrow(
      /generate: image features and image tokens do not match: the prompt has 0 image tokens/,
    );
  });
  test("pixel_values and image_features together", async () => {
    const inputs = await processor({ text: "<|image|>hi", images: [dog], return_tensors: "pt" });
    const features = await model.embed_images(inputs.pixel_values!);
    await expect(model.forward({ ...inputs, image_features: features })).rejects.toThrow(/pass pixel_values or image_features, not both/);
  });
  test("image_features of the wrong width", async () => {
    const features = new Tensor("float32", new Float32Array(4 * 3), [4, 3]);
    await expect(model.forward({ input_ids: [[200092, 200092, 200092, 200092]], image_features: features })).rejects.toThrow(
      /image_features must be a float32 Tensor \[image tokens, 8\], got a float32 Tensor \[4, 3\]/,
    );
  });
  test("images for a text-only checkpoint", async () => {
    const text = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
    const pixels = new Tensor("float32", new Float32Array(3 * 56 * 56), [1, 3, 56, 56]);
    await expect(text.forward({ input_ids: [[1, 2]], pixel_values: pixels })).rejects.toThrow(/is a text-only checkpoint .* it cannot take images/);
  });
});
