// The Llama 4 docs page's examples ("Pipeline", "AutoModel - Text only", "AutoModel - Multimodal",
// "Multimodal with multiple images"), ported line by line to TypeScript. Only the web is swapped: a
// local server on 127.0.0.1 serves the tiny instruct fixture (real Llama 4 tokenizer, chat template
// and processor files, random weights, a small vision tower) under the real model id, and another
// serves the images (the committed photos stand in for the docs' car, rabbit and cat). Expected
// outputs: what transformers printed for the same code (docs-examples-goldens.json and
// multimodal-goldens.json).
import { afterAll, beforeAll, expect, test } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { AutoProcessor, AutoTokenizer, FbgemmFp8Config, Llama4ForConditionalGeneration, pipeline, torch } from "../sdk";
import { FileServer } from "./helpers/file-server";
import { FIXTURES, modelDir } from "./helpers/fixtures";
import { fakeSha, HubServer } from "./helpers/hub-server";

const golden = JSON.parse(readFileSync(join(FIXTURES, "docs-examples-goldens.json"), "utf8"));
// The quantization examples: FP8 math emulated exactly in transformers' modules, float32 (make_docs_quantization_goldens.py).
const quantized = JSON.parse(readFileSync(join(FIXTURES, "docs-quantization-goldens.json"), "utf8"));
const FP8_LOGITS_TOLERANCE = 1e-3;
const FP8_REPO = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8";
const multimodal = JSON.parse(readFileSync(join(FIXTURES, "multimodal-goldens.json"), "utf8")).docs;
// bf16 weights computed in f32 on both sides; the vision tower adds its own rounding paths.
const LOGITS_TOLERANCE = 1e-4;
const REPO = "meta-llama/Llama-4-Scout-17B-16E-Instruct";
let server: HubServer;
let images: FileServer;
let imageBase: string;
let home: string;
const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HOME: process.env.HF_HOME, HF_HUB_CACHE: process.env.HF_HUB_CACHE };

beforeAll(async () => {
  const file = (dir: string, name: string) => readFileSync(join(dir, name));
  const model = modelDir("tiny-llama4-instruct");
  const tok = join(FIXTURES, "llama4-tokenizer");
  const sha = fakeSha("instruct");
  server = new HubServer([
    {
      id: REPO,
      commits: [{
        sha,
        files: {
          "config.json": file(model, "config.json"),
          "generation_config.json": file(model, "generation_config.json"),
          "model.safetensors": { content: file(model, "model.safetensors"), lfs: true },
          "tokenizer.json": { content: file(tok, "tokenizer.json"), lfs: true },
          "tokenizer_config.json": file(tok, "tokenizer_config.json"),
          "chat_template.jinja": file(tok, "chat_template.jinja"),
          "preprocessor_config.json": file(model, "preprocessor_config.json"),
          "processor_config.json": file(model, "processor_config.json"),
        },
      }],
      refs: { main: sha },
    },
    {
      // The pre-quantized FP8 release, played by an FP8 (compressed-tensors) copy of the same tiny model.
      id: FP8_REPO,
      commits: [{
        sha: fakeSha("instruct-fp8"),
        files: {
          ...Object.fromEntries(["config.json", "generation_config.json", "model.safetensors.index.json", "preprocessor_config.json",
            "processor_config.json"].map((f) => [f, file(modelDir("tiny-llama4-instruct-fp8"), f)])),
          ...Object.fromEntries(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"].map((f) =>
            [f, { content: file(modelDir("tiny-llama4-instruct-fp8"), f), lfs: true }])),
          "tokenizer.json": { content: file(tok, "tokenizer.json"), lfs: true },
          "tokenizer_config.json": file(tok, "tokenizer_config.json"),
          "chat_template.jinja": file(tok, "chat_template.jinja"),
        },
      }],
      refs: { main: fakeSha("instruct-fp8") },
    },
  ]);
  process.env.HF_ENDPOINT = await server.start();
  const photos = join(FIXTURES, "images");
  images = new FileServer({ "dog.jpg": file(photos, "dog.jpg"), "pasta.jpeg": file(photos, "pasta.jpeg") });
  imageBase = await images.start();
  home = mkdtempSync(join(tmpdir(), "llama4-docs-"));
  process.env.HF_HOME = home;
  delete process.env.HF_HUB_CACHE;
});

afterAll(async () => {
  await server?.close();
  await images?.close();
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  rmSync(home, { recursive: true, force: true });
});

test("Pipeline example", async () => {
  const model_id = "meta-llama/Llama-4-Scout-17B-16E-Instruct";

  const messages = [
    { role: "user", content: "what is the recipe of mayonnaise?" },
  ];

  const pipe = await pipeline("text-generation", {
    model: model_id,
    device_map: "auto",
    dtype: torch.bfloat16,
  });

  const output = await pipe(messages, { do_sample: false, max_new_tokens: 200 });
  // print(output[0]["generated_text"][-1]["content"])
  expect(output[0].generated_text.at(-1)!.content).toBe(golden.pipeline.output[0].generated_text.at(-1).content);
  expect(output).toEqual(golden.pipeline.output);
});

test("AutoModel - Text only example", async () => {
  const model_id = "meta-llama/Llama-4-Scout-17B-16E-Instruct";

  const tokenizer = await AutoTokenizer.from_pretrained(model_id);

  const messages = [
    { role: "user", content: "Who are you?" },
  ];
  const inputs = tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_tensors: "pt", return_dict: true });

  const model = await Llama4ForConditionalGeneration.from_pretrained(model_id, {
    device_map: "auto",
    dtype: torch.bfloat16,
  });

  let outputs = await model.generate({ ...inputs.to(model.device), max_new_tokens: 100 });
  const decoded = tokenizer.batch_decode(outputs.slice(null, [inputs["input_ids"].shape.at(-1)!, null]));
  // print(outputs[0])
  expect(decoded[0]).toBe(golden.automodel_text.decoded[0]);
  expect(inputs["input_ids"].tolist()).toEqual([golden.automodel_text.input_ids]);
  outputs = outputs.slice(null, [golden.automodel_text.input_ids.length, null]);
  expect(outputs.tolist()).toEqual([golden.automodel_text.generated_ids]);
});

// The docs' "Quantization" examples. Their text is as degenerate as the unquantized tiny model's, so the step logits
// (top-2 of every step, and the first step's top 10) prove the FP8 arithmetic ran: they move by up to 3 against
// the unquantized model, and stay within FP8_LOGITS_TOLERANCE of the emulation.
function expectStepLogits(logits: { data: ArrayLike<number> }[], ref: { ids: number[][]; values: number[][] }, first: { ids: number[]; values: number[] }) {
  expect(logits).toHaveLength(ref.ids.length);
  ref.ids.forEach((ids, step) => ids.forEach((id, j) => {
    expect(Math.abs(logits[step].data[id] - ref.values[step][j]), `step ${step}, token ${id}`).toBeLessThanOrEqual(FP8_LOGITS_TOLERANCE);
  }));
  first.ids.forEach((id, j) => expect(Math.abs(logits[0].data[id] - first.values[j])).toBeLessThanOrEqual(FP8_LOGITS_TOLERANCE));
}

test("Quantization example: FBGEMM", async () => {
  const model_id = "meta-llama/Llama-4-Scout-17B-16E-Instruct";

  const tokenizer = await AutoTokenizer.from_pretrained(model_id);

  const messages = [
    { role: "user", content: "Who are you?" },
  ];
  const inputs = tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_tensors: "pt", return_dict: true });

  const model = await Llama4ForConditionalGeneration.from_pretrained(model_id, {
    device_map: "auto",
    torch_dtype: torch.bfloat16,
    quantization_config: new FbgemmFp8Config(),
  });

  const outputs = await model.generate({ ...inputs.to(model.device), max_new_tokens: 100, return_dict_in_generate: true, output_logits: true });
  const decoded = tokenizer.batch_decode(outputs.sequences.slice(null, [inputs["input_ids"].shape.at(-1)!, null]));
  // print(outputs[0])
  expect(decoded[0]).toBe(quantized.fbgemm.decoded[0]);
  expect(inputs["input_ids"].tolist()).toEqual([quantized.fbgemm.input_ids]);
  expect(outputs.sequences.slice(null, [quantized.fbgemm.input_ids.length, null]).tolist()).toEqual([quantized.fbgemm.generated_ids]);
  expectStepLogits(outputs.logits!, quantized.fbgemm.step_logits_top2, quantized.fbgemm.last_logits_top10);
  expect(model.weight_memory().filter((m) => m.dtype === "F8_E4M3").map((m) => m.module).sort()).toEqual(["attention", "experts", "mlp", "shared_expert"]);
});

test("Quantization example: LLM-Compressor (a pre-quantized FP8 checkpoint)", async () => {
  const model_id = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8";

  const tokenizer = await AutoTokenizer.from_pretrained(model_id);

  const messages = [
    { role: "user", content: "Who are you?" },
  ];
  const inputs = tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_tensors: "pt", return_dict: true });

  const model = await Llama4ForConditionalGeneration.from_pretrained(model_id, {
    tp_plan: "auto",
    torch_dtype: torch.bfloat16,
  });

  const outputs = await model.generate({ ...inputs.to(model.device), max_new_tokens: 100, return_dict_in_generate: true, output_logits: true });
  const decoded = tokenizer.batch_decode(outputs.sequences.slice(null, [inputs["input_ids"].shape.at(-1)!, null]));
  // print(outputs[0])
  expect(decoded[0]).toBe(quantized.llm_compressor.decoded[0]);
  expect(outputs.sequences.slice(null, [quantized.llm_compressor.input_ids.length, null]).tolist()).toEqual([quantized.llm_compressor.generated_ids]);
  expect(quantized.llm_compressor.transformers.generated_ids).toEqual(quantized.llm_compressor.generated_ids); // transformers itself agrees
  expectStepLogits(outputs.logits!, quantized.llm_compressor.step_logits_top2, quantized.llm_compressor.last_logits_top10);
  expect(model.weight_memory().filter((m) => m.dtype === "F8_E4M3").map((m) => m.module).sort()).toEqual(["experts", "mlp", "shared_expert"]);
});

test("pipeline on a plain string, full text and new text only", async () => {
  const pipe = await pipeline("text-generation", { model: REPO, dtype: torch.bfloat16 });
  const prompt = golden.pipeline_string.prompt;
  expect(await pipe(prompt, { do_sample: false, max_new_tokens: 12 })).toEqual(golden.pipeline_string.output);
  expect(await pipe(prompt, { do_sample: false, max_new_tokens: 12, return_full_text: false })).toEqual(
    golden.pipeline_string.return_full_text_false,
  );
  // a batch returns one list per input
  const batch = await pipe([prompt, prompt], { do_sample: false, max_new_tokens: 12 });
  expect(batch).toEqual([golden.pipeline_string.output, golden.pipeline_string.output]);
});

/** The last-position logits' top 10 against transformers' (ids equal, values within LOGITS_TOLERANCE). */
async function expectLastLogits(model: Llama4ForConditionalGeneration, inputs: object, expected: { ids: number[]; values: number[] }) {
  const out = await model.forward({ ...inputs, logits_to_keep: 1 } as Parameters<typeof model.forward>[0]);
  const row = Array.from(out.logits.data as Float32Array);
  const top = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).slice(0, 10);
  expect(top.map(([, i]) => i)).toEqual(expected.ids);
  const diff = Math.max(...top.map(([v], k) => Math.abs(v - expected.values[k])));
  expect(diff).toBeLessThanOrEqual(LOGITS_TOLERANCE);
}

test("AutoModel - Multimodal example", async () => {
  const model_id = "meta-llama/Llama-4-Scout-17B-16E-Instruct";

  const processor = await AutoProcessor.from_pretrained(model_id);
  const model = await Llama4ForConditionalGeneration.from_pretrained(model_id, {
    attn_implementation: "flex_attention",
    device_map: "auto",
    dtype: torch.bfloat16,
  });

  const img_url = `${imageBase}/dog.jpg`;
  const messages = [
    {
      role: "user",
      content: [
        { type: "image", url: img_url },
        { type: "text", text: "Describe this image in two sentences." },
      ],
    },
  ];

  const inputs = (await processor.apply_chat_template(messages, {
    add_generation_prompt: true,
    tokenize: true,
    return_dict: true,
    return_tensors: "pt",
  })).to(model.device);

  const outputs = await model.generate({
    ...inputs,
    max_new_tokens: 256,
  });

  const response = processor.batch_decode(outputs.slice(null, [inputs["input_ids"].shape.at(-1)!, null]))[0];
  // print(response); print(outputs[0])
  const expected = multimodal.automodel_multimodal;
  expect(inputs["input_ids"].tolist()).toEqual([expected.input_ids]);
  expect(inputs["pixel_values"]!.shape).toEqual(expected.pixel_values_shape);
  await expectLastLogits(model, inputs, expected.last_logits_top10);
  expect(outputs.slice(null, [expected.input_ids.length, null]).tolist()).toEqual([expected.generated_ids]);
  expect(response).toBe(expected.response);
});

test("Multimodal with multiple images example", async () => {
  const model_id = "meta-llama/Llama-4-Scout-17B-16E-Instruct";

  const processor = await AutoProcessor.from_pretrained(model_id);
  const model = await Llama4ForConditionalGeneration.from_pretrained(model_id, {
    attn_implementation: "flex_attention",
    device_map: "auto",
    dtype: torch.bfloat16,
  });

  const url1 = `${imageBase}/dog.jpg`;
  const url2 = `${imageBase}/pasta.jpeg`;
  const messages = [
    {
      role: "user",
      content: [
        { type: "image", url: url1 },
        { type: "image", url: url2 },
        { type: "text", text: "Can you describe how these two images are similar, and how they differ?" },
      ],
    },
  ];
  const inputs = (await processor.apply_chat_template(messages, {
    add_generation_prompt: true,
    tokenize: true,
    return_dict: true,
    return_tensors: "pt",
  })).to(model.device);

  const outputs = await model.generate({
    ...inputs,
    max_new_tokens: 256,
  });

  const response = processor.batch_decode(outputs.slice(null, [inputs["input_ids"].shape.at(-1)!, null]))[0];
  const expected = multimodal.multiple_images;
  expect(inputs["input_ids"].tolist()).toEqual([expected.input_ids]);
  expect(inputs["pixel_values"]!.shape).toEqual(expected.pixel_values_shape);
  await expectLastLogits(model, inputs, expected.last_logits_top10);
  expect(outputs.slice(null, [expected.input_ids.length, null]).tolist()).toEqual([expected.generated_ids]);
  expect(response).toBe(expected.response);
});

test("pipeline(\"image-text-to-text\") on a chat and on an image with text", async () => {
  const pipe = await pipeline("image-text-to-text", { model: REPO, dtype: torch.bfloat16 });
  const chat = [{ role: "user", content: [
    { type: "image", url: `${imageBase}/pasta.jpeg` },
    { type: "text", text: "What is on the plate?" },
  ] }];
  const urlsToNames = (records: unknown) => JSON.parse(JSON.stringify(records).replaceAll(`${imageBase}/`, ""));
  const expected = multimodal.pipeline_chat;
  expect(urlsToNames(await pipe(chat, { max_new_tokens: 20, do_sample: false }))).toEqual(expected.output);
  expect(urlsToNames(await pipe(chat, { max_new_tokens: 20, do_sample: false, return_full_text: false }))).toEqual(
    expected.return_full_text_false,
  );
  // a list of chats: one list of records per chat
  expect(urlsToNames(await pipe([chat, chat], { max_new_tokens: 20, do_sample: false }))).toEqual([expected.output, expected.output]);
  const pair = multimodal.pipeline_image_text;
  const out = await pipe(join(FIXTURES, "images", pair.image), { text: pair.text, max_new_tokens: 12, do_sample: false });
  expect(out).toEqual(pair.output);
  // the keyword form {images, text} is the same call
  expect(await pipe({ images: `${imageBase}/${pair.image}`, text: pair.text }, { max_new_tokens: 12, do_sample: false })).toEqual(pair.output);
  // processor_kwargs reach the image processor (one tile instead of 17), and timeout the image loading
  const small = await pipe(chat, { max_new_tokens: 8, do_sample: false, processor_kwargs: { max_patches: 1 }, timeout: 30 });
  expect(urlsToNames(small)).toEqual(multimodal.pipeline_processor_kwargs.output);
  // text alone, as pipe(text=...) in Python
  const textOnly = multimodal.pipeline_text_only;
  expect(await pipe(null, { text: textOnly.text, max_new_tokens: 8, do_sample: false })).toEqual(textOnly.output);
  expect(await pipe({ text: textOnly.text }, { max_new_tokens: 8, do_sample: false })).toEqual(textOnly.output);
});
