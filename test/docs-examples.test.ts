// The Llama 4 docs page's text examples ("Pipeline" and "AutoModel - Text only"), ported line by
// line to TypeScript. Only the Hub is swapped: a local server on 127.0.0.1 serves the tiny
// instruct fixture (real Llama 4 tokenizer and chat template, random weights) under the real model
// id. Expected outputs: what transformers printed for the same code (docs-examples-goldens.json).
import { afterAll, beforeAll, expect, test } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { AutoTokenizer, Llama4ForConditionalGeneration, pipeline, torch } from "../sdk";
import { FIXTURES, modelDir } from "./helpers/fixtures";
import { fakeSha, HubServer } from "./helpers/hub-server";

const golden = JSON.parse(readFileSync(join(FIXTURES, "docs-examples-goldens.json"), "utf8"));
const REPO = "meta-llama/Llama-4-Scout-17B-16E-Instruct";
let server: HubServer;
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
        },
      }],
      refs: { main: sha },
    },
  ]);
  process.env.HF_ENDPOINT = await server.start();
  home = mkdtempSync(join(tmpdir(), "llama4-docs-"));
  process.env.HF_HOME = home;
  delete process.env.HF_HUB_CACHE;
});

afterAll(async () => {
  await server?.close();
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
