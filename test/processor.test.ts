// Llama4Processor against transformers' (multimodal-goldens.json, from make_multimodal_goldens.py):
// the ids of prompts with images, i.e. every image's token layout (tiles, separators, global tile),
// for each test image at the tiny checkpoint's 56-pixel tiles and at Llama 4's real 336-pixel ones;
// a left-padded batch; a chat with an image part; the API's conventions (what apply_chat_template
// returns by default, image_url parts, processor_kwargs, templates without BOS). Plus the input checks.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";

import { AutoProcessor, AutoTokenizer, Llama4ImageProcessor, Llama4Processor, load_image, PreTrainedTokenizer, Tensor } from "../sdk";
import { FIXTURES, modelDir } from "./helpers/fixtures";

const golden = JSON.parse(readFileSync(join(FIXTURES, "multimodal-goldens.json"), "utf8")).processor;
const INSTRUCT = modelDir("tiny-llama4-instruct");
const IMAGES = join(FIXTURES, "images");
const preprocessor = JSON.parse(readFileSync(join(INSTRUCT, "preprocessor_config.json"), "utf8"));

let tokenizer: PreTrainedTokenizer;
const processors = new Map<number, Llama4Processor>();

beforeAll(async () => {
  tokenizer = await AutoTokenizer.from_pretrained(join(FIXTURES, "llama4-tokenizer"));
  for (const size of [56, 336]) {
    processors.set(size, new Llama4Processor(new Llama4ImageProcessor({ ...preprocessor, size: { height: size, width: size } }), tokenizer));
  }
});

describe("token layout of every test image equals transformers'", () => {
  for (const c of golden.cases as { image: string; size: number; input_ids: number[]; pixel_values_shape: number[] }[]) {
    test(`${c.image} at ${c.size}px tiles`, async () => {
      const out = await processors.get(c.size)!({ text: "<|image|>What is in this image?", images: [join(IMAGES, c.image)], return_tensors: "pt" });
      expect(out.pixel_values!.dims).toEqual(c.pixel_values_shape);
      expect((out.input_ids as Tensor).tolist()).toEqual([c.input_ids]);
    });
  }
});

test("a batch of two prompts with three images, left-padded", async () => {
  const b = golden.batch;
  const out = await processors.get(56)!({ text: b.text, images: b.images.map((n: string) => join(IMAGES, n)), padding: true, return_tensors: "pt" });
  expect((out.input_ids as Tensor).tolist()).toEqual(b.input_ids);
  expect((out.attention_mask as Tensor).tolist()).toEqual(b.attention_mask);
  expect(out.pixel_values!.dims).toEqual(b.pixel_values_shape);
  // the spread of a BatchFeature is exactly the model inputs
  expect(Object.keys({ ...out }).sort()).toEqual(["attention_mask", "input_ids", "pixel_values"]);
});

test("apply_chat_template with an image part: rendered text and ids", async () => {
  const processor = await AutoProcessor.from_pretrained(INSTRUCT, { tokenizer });
  const messages = golden.chat.messages.map((m: { content: { type: string; image?: string }[] }) => ({
    ...m,
    content: m.content.map((part) => (part.type === "image" ? { type: "image", path: join(IMAGES, part.image!) } : part)),
  }));
  expect(await processor.apply_chat_template(messages, { add_generation_prompt: true, tokenize: false })).toBe(golden.chat.rendered);
  const inputs = await processor.apply_chat_template(messages, { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  expect(inputs.input_ids.tolist()).toEqual([golden.chat.input_ids]);
  // an image object instead of a path gives the same ids
  const image = readFileSync(join(IMAGES, "dog.jpg"));
  const again = await processor.apply_chat_template(
    [{ role: "user", content: [{ type: "image", image }, { type: "text", text: "Describe this image in two sentences." }] }],
    { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" },
  );
  expect(again.input_ids.tolist()).toEqual([golden.chat.input_ids]);
  expect(Array.from(again.pixel_values!.data)).toEqual(Array.from(inputs.pixel_values!.data));
});

test("apply_chat_template on a batch of chats: images in order, rows left-padded", async () => {
  const processor = processors.get(56)!;
  const chat = (image: string, text: string) => [{ role: "user", content: [{ type: "image", path: join(IMAGES, image) }, { type: "text", text }] }];
  const out = await processor.apply_chat_template(
    [chat("dog.jpg", "Describe this image in two sentences."), chat("pasta.jpeg", "And this one, please, in some detail?")],
    { add_generation_prompt: true, tokenize: true, return_dict: true, padding: true, return_tensors: "pt" },
  );
  const rows = out.input_ids.tolist() as number[][];
  const mask = out.attention_mask.tolist() as number[][];
  expect(rows[0].filter((_, i) => mask[0][i] === 1)).toEqual(golden.chat.input_ids);
  expect(mask[0][0]).toBe(0); // the shorter row is padded on the left
  expect(out.pixel_values!.dims[0]).toBe(17 + 17);
});

test("the processor's layout string for 2x3 tiles, spelled out", () => {
  const p = processors.get(56)!;
  const patches = "<|patch|>".repeat(4);
  const row = [patches, patches, patches].join("<|tile_x_separator|>") + "<|tile_y_separator|>";
  expect(p._prompt_split_image([2, 3], 4)).toBe(`<|image_start|>${row}${row}<|image|>${patches}<|image_end|>`);
  expect(p._prompt_split_image([1, 1], 4)).toBe(`<|image_start|><|image|>${patches}<|image_end|>`);
});

test("image_layout: the tile grid and token count the processor used for an image", async () => {
  const p = processors.get(56)!;
  const image = await load_image(join(IMAGES, "dog.jpg"));
  const layout = p.image_layout(image);
  const out = await p({ text: "<|image|>", images: [image] });
  const patches = (out.input_ids as number[][])[0].filter((id) => id === layout.patch_id).length;
  expect(layout).toMatchObject({ image_width: 512, image_height: 512, tile_size: 56, aspect_ratio: [4, 4], resized_width: 224, resized_height: 224, tokens_per_tile: 4 });
  expect(patches).toBe((4 * 4 + 1) * layout.tokens_per_tile);
});

describe("API conventions, as transformers answers them (golden.api)", () => {
  const api = golden.api;
  const dog = join(IMAGES, "dog.jpg");
  const imageChat = [{ role: "user", content: [{ type: "image", path: dog }, { type: "text", text: "What is this?" }] }];
  let processor: Llama4Processor;
  beforeAll(async () => {
    processor = await AutoProcessor.from_pretrained(INSTRUCT, { tokenizer });
  });

  test("input_ids is a batch even for one text, as for a multimodal processor in transformers", async () => {
    expect((await processor({ text: api.text_only.text })).input_ids).toEqual(api.text_only.input_ids);
    const out = await processor({ text: "<|image|>What is in this image?", images: [join(IMAGES, golden.cases[0].image)] });
    expect(out.input_ids).toEqual([golden.cases[0].input_ids]);
  });

  test("apply_chat_template renders text by default, and returns input_ids alone with tokenize only", async () => {
    expect(await processor.apply_chat_template(api.chat_default.messages, { add_generation_prompt: true })).toBe(api.chat_default.output);
    expect(await processor.apply_chat_template(imageChat, { add_generation_prompt: true, tokenize: true })).toEqual(api.chat_ids.input_ids);
    const ids = await processor.apply_chat_template(imageChat, { add_generation_prompt: true, tokenize: true, return_tensors: "pt" });
    expect(ids).toBeInstanceOf(Tensor);
    expect(ids.tolist()).toEqual(api.chat_ids.input_ids);
  });

  test("OpenAI-style image_url parts are image parts (the messages given are left as they were)", async () => {
    const chat = (image_url: unknown) => [{ role: "user", content: [{ type: "image_url", image_url }, { type: "text", text: "What is this?" }] }];
    const withObject = chat({ url: dog });
    const before = JSON.stringify(withObject);
    expect(await processor.apply_chat_template(withObject, { add_generation_prompt: true })).toBe(api.image_url.rendered);
    expect(await processor.apply_chat_template(withObject, { add_generation_prompt: true, tokenize: true })).toEqual(api.image_url.input_ids);
    expect(await processor.apply_chat_template(chat(dog), { add_generation_prompt: true, tokenize: true })).toEqual(api.image_url.string_form_input_ids);
    expect(JSON.stringify(withObject)).toBe(before);
  });

  test("processor_kwargs, or processor options given directly, reach the image processor", async () => {
    const base = { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" } as const;
    for (const options of [{ ...base, processor_kwargs: { max_patches: 1 } }, { ...base, max_patches: 1 }, { ...base, images_kwargs: { max_patches: 1 } }]) {
      const out = await processor.apply_chat_template(imageChat, options);
      expect(out.input_ids.tolist()).toEqual(api.max_patches_1.input_ids);
      expect(out.pixel_values!.dims).toEqual(api.max_patches_1.pixel_values_shape);
    }
  });

  test("nested text_kwargs / images_kwargs in processor_kwargs do not clash with apply_chat_template's own options", async () => {
    const out = await processor.apply_chat_template(imageChat, {
      add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt", padding: false,
      processor_kwargs: { text_kwargs: { padding: true }, images_kwargs: { max_patches: 1 } },
    });
    expect(out.input_ids.tolist()).toEqual(api.max_patches_1.input_ids);
  });

  test("an image_url part without image_url, and post-processing an empty sequence", async () => {
    await expect(
      processor.apply_chat_template([{ role: "user", content: [{ type: "image_url", url: "x.png" }] }], { tokenize: true }),
    ).rejects.toThrow(/an image_url part must hold image_url: \{ url \} \(got keys type, url\)/);
    expect(processor.post_process_image_text_to_text([])).toBe("");
  });

  test("a template that does not write <|begin_of_text|> gets it from the tokenizer", async () => {
    const ids = await processor.apply_chat_template(api.chat_default.messages, { chat_template: api.no_bos_template.template, tokenize: true });
    expect(ids).toEqual(api.no_bos_template.input_ids);
  });

  test("post_process_image_text_to_text: one sequence gives one string", () => {
    const { sequence, text } = api.post_process_1d;
    expect(processor.post_process_image_text_to_text(sequence)).toBe(text);
    expect(processor.post_process_image_text_to_text(new Tensor("int32", Int32Array.from(sequence), [sequence.length]))).toBe(text);
    expect(processor.post_process_image_text_to_text([sequence, sequence])).toEqual([text, text]);
  });

  test("a base64 part may hold a data URL", async () => {
    const bytes = readFileSync(dog).toString("base64");
    const chat = (base64: string) => [{ role: "user", content: [{ type: "image", base64 }, { type: "text", text: "What is this?" }] }];
    const bare = await processor.apply_chat_template(chat(bytes), { add_generation_prompt: true, tokenize: true });
    const url = await processor.apply_chat_template(chat(`data:image/jpeg;base64,${bytes}`), { add_generation_prompt: true, tokenize: true });
    expect(bare).toEqual(api.chat_ids.input_ids);
    expect(url).toEqual(api.chat_ids.input_ids);
  });

  test("the image processor nested in processor_config.json wins over preprocessor_config.json, as in transformers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "llama4-processor-"));
    try {
      for (const name of readdirSync(INSTRUCT)) if (name.endsWith(".json") || name.endsWith(".jinja")) copyFileSync(join(INSTRUCT, name), join(dir, name));
      const processorConfig = JSON.parse(readFileSync(join(INSTRUCT, "processor_config.json"), "utf8"));
      writeFileSync(join(dir, "processor_config.json"), JSON.stringify({ ...processorConfig, image_processor: { ...preprocessor, max_patches: 1 } }));
      const nested = await AutoProcessor.from_pretrained(dir, { tokenizer });
      expect(nested.image_processor.max_patches).toBe(1);
      expect(processor.image_processor.max_patches).toBe(preprocessor.max_patches);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the same option directly and in images_kwargs is an error naming it", async () => {
    await expect(processor({ text: "<|image|>", images: [dog], max_patches: 1, images_kwargs: { max_patches: 2 } })).rejects.toThrow(
      /max_patches was given twice, directly and in images_kwargs/,
    );
    // @ts-expect-error: not an image processor option
    await expect(processor({ text: "hi", images_kwargs: { max_patch: 1 } })).rejects.toThrow(/images_kwargs.*max_patch.*max_patches/s);
  });
});

describe("bad input", () => {
  const dog = join(IMAGES, "dog.jpg");
  test("more images than <|image|> placeholders", async () => {
    await expect(processors.get(56)!({ text: "<|image|>one", images: [dog, dog] })).rejects.toThrow(
      /1 <\|image\|> placeholder but 2 images were given/,
    );
  });
  test("fewer images than placeholders", async () => {
    await expect(processors.get(56)!({ text: "<|image|> and <|image|>", images: [dog] })).rejects.toThrow(
      /2 <\|image\|> placeholders but 1 image was given/,
    );
  });
  test("placeholders without images", async () => {
    await expect(processors.get(56)!({ text: "<|image|> where?" })).rejects.toThrow(/1 <\|image\|> placeholder but 0 images/);
  });
  test("truncation that cuts into an image's tokens", async () => {
    await expect(processors.get(56)!({ text: "<|image|>hi", images: [dog], truncation: true, max_length: 20 })).rejects.toThrow(
      /keeps 1[0-9] of its images' 68 <\|patch\|> tokens after tokenization, likely cut by truncation/,
    );
  });
  test("no text", async () => {
    await expect(processors.get(56)!({ images: [dog] })).rejects.toThrow(/you have to specify text/);
  });
  test("positional call", async () => {
    // @ts-expect-error: the processor takes Python's keyword arguments as one object
    await expect(processors.get(56)!("<|image|>hi", [dog])).rejects.toThrow(/processor\(\{ text, images, \.\.\. \}\)/);
  });
  test("misspelt option", async () => {
    // @ts-expect-error: not an option
    await expect(processors.get(56)!({ text: "hi", max_patch: 4 })).rejects.toThrow(/max_patch.*max_patches/s);
  });
  test("an image part with no source", async () => {
    const processor = processors.get(56)!;
    await expect(
      processor.apply_chat_template([{ role: "user", content: [{ type: "image" }, { type: "text", text: "?" }] }], { tokenize: true }),
    ).rejects.toThrow(/messages\[0\]\.content\[0\] is an image part without "url", "path", "image" or "base64"/);
  });
  test("an image part naming a missing file", async () => {
    const processor = processors.get(56)!;
    await expect(
      processor.apply_chat_template([{ role: "user", content: [{ type: "image", path: join(IMAGES, "missing.jpg") }] }], { tokenize: true }),
    ).rejects.toThrow(/messages\[0\]\.content\[0\].*missing\.jpg/);
  });
  test("AutoProcessor on a text-only checkpoint", async () => {
    await expect(AutoProcessor.from_pretrained(modelDir("tiny-llama4-f32"))).rejects.toThrow(/text-only checkpoint has no processor; use AutoTokenizer/);
  });
});
