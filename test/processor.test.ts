// Llama4Processor against transformers' (multimodal-goldens.json, from make_multimodal_goldens.py):
// the ids of prompts with images, i.e. every image's token layout (tiles, separators, global tile),
// for each test image at the tiny checkpoint's 56-pixel tiles and at Llama 4's real 336-pixel ones;
// a left-padded batch; a chat with an image part. Plus the processor's input checks.
import { readFileSync } from "node:fs";
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
  const inputs = await processor.apply_chat_template(messages, { add_generation_prompt: true, return_tensors: "pt" });
  expect(inputs.input_ids.tolist()).toEqual([golden.chat.input_ids]);
  // an image object instead of a path gives the same ids
  const image = readFileSync(join(IMAGES, "dog.jpg"));
  const again = await processor.apply_chat_template(
    [{ role: "user", content: [{ type: "image", image }, { type: "text", text: "Describe this image in two sentences." }] }],
    { add_generation_prompt: true, return_tensors: "pt" },
  );
  expect(again.input_ids.tolist()).toEqual([golden.chat.input_ids]);
  expect(Array.from(again.pixel_values!.data)).toEqual(Array.from(inputs.pixel_values!.data));
});

test("apply_chat_template on a batch of chats: images in order, rows left-padded", async () => {
  const processor = processors.get(56)!;
  const chat = (image: string, text: string) => [{ role: "user", content: [{ type: "image", path: join(IMAGES, image) }, { type: "text", text }] }];
  const out = await processor.apply_chat_template(
    [chat("dog.jpg", "Describe this image in two sentences."), chat("pasta.jpeg", "And this one, please, in some detail?")],
    { add_generation_prompt: true, padding: true, return_tensors: "pt" },
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
  const patches = (out.input_ids as number[]).filter((id) => id === layout.patch_id).length;
  expect(layout).toMatchObject({ image_width: 512, image_height: 512, tile_size: 56, aspect_ratio: [4, 4], resized_width: 224, resized_height: 224, tokens_per_tile: 4 });
  expect(patches).toBe((4 * 4 + 1) * layout.tokens_per_tile);
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
      processor.apply_chat_template([{ role: "user", content: [{ type: "image" }, { type: "text", text: "?" }] }]),
    ).rejects.toThrow(/messages\[0\]\.content\[0\] is an image part without "url", "path", "image" or "base64"/);
  });
  test("an image part naming a missing file", async () => {
    const processor = processors.get(56)!;
    await expect(
      processor.apply_chat_template([{ role: "user", content: [{ type: "image", path: join(IMAGES, "missing.jpg") }] }]),
    ).rejects.toThrow(/messages\[0\]\.content\[0\].*missing\.jpg/);
  });
  test("AutoProcessor on a text-only checkpoint", async () => {
    await expect(AutoProcessor.from_pretrained(modelDir("tiny-llama4-f32"))).rejects.toThrow(/text-only checkpoint has no processor; use AutoTokenizer/);
  });
});
