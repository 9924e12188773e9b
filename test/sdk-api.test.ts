// The transformers-shaped SDK around the engine: configs, tokenizer-driven generation (streamers,
// stop strings), pipeline arguments, and the errors a user meets first.
import { beforeAll, describe, expect, test, vi } from "vitest";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  AsyncTextIteratorStreamer,
  AutoConfig,
  AutoTokenizer,
  Llama4Config,
  Llama4ForCausalLM,
  Llama4ForConditionalGeneration,
  Llama4TextConfig,
  Llama4TextModel,
  pipeline,
  PreTrainedTokenizer,
  Tensor,
  TextStreamer,
  torch,
} from "../sdk";
import { native } from "../sdk/native";
import { maxAbsDiff } from "./helpers/compare";
import { FIXTURES, modelDir } from "./helpers/fixtures";
import { readRaw } from "./helpers/safetensors";

const TOKENIZER = join(FIXTURES, "llama4-tokenizer");
const INSTRUCT = modelDir("tiny-llama4-instruct");

describe("configs", () => {
  test.each(["tiny-llama4-f32", "tiny-llama4-bf16-sharded", "tiny-llama4-conditional", "tiny-llama4-instruct"])(
    "%s: derived layer lists equal the engine's",
    async (name) => {
      const config = await AutoConfig.from_pretrained(modelDir(name));
      const text = config instanceof Llama4Config ? config.text_config : config;
      const engine = JSON.parse((await native().loadModel(modelDir(name), { dtype: "auto" })).config());
      expect(text.moe_layers).toEqual(engine.moe_layers);
      expect(text.no_rope_layers.slice(0, text.num_hidden_layers)).toEqual(engine.no_rope_layers);
      expect(text.layer_types).toEqual(engine.layer_types);
      expect(text.head_dim).toBe(engine.head_dim);
    },
  );

  test("the multimodal layout gives a Llama4Config with text and vision configs; legacy rope keys are read", async () => {
    const config = (await AutoConfig.from_pretrained(modelDir("tiny-llama4-conditional"))) as Llama4Config;
    expect(config).toBeInstanceOf(Llama4Config);
    expect(config.model_type).toBe("llama4");
    expect(config.text_config.rope_parameters).toMatchObject({ rope_type: "llama3", rope_theta: 500000, factor: 16 });
    expect(config.vision_config.patch_size).toBe(14);
    expect(config.image_token_id).toBe(200092);
    // config.json may use transformers' attribute_map aliases
    const aliased = new Llama4Config({ image_token_id: 5, boi_token_id: 6, eoi_token_id: 7 });
    expect([aliased.image_token_index, aliased.boi_token_index, aliased.eoi_token_index]).toEqual([5, 6, 7]);
    expect(aliased.image_token_id).toBe(5);
    expect(aliased.to_dict()).not.toHaveProperty("image_token_id");
  });

  test("defaults are transformers' (Scout sizes), unknown keys are kept", () => {
    const c = new Llama4TextConfig({ my_extra_key: 42 });
    expect(c.hidden_size).toBe(5120);
    expect(c.num_local_experts).toBe(16);
    expect(c.no_rope_layers.filter((r) => r === 0)).toHaveLength(12); // every 4th of 48 layers is NoPE
    expect(c.layer_types[3]).toBe("full_attention");
    expect(c.moe_layers).toHaveLength(48);
    expect(c.my_extra_key).toBe(42);
    expect(JSON.parse(c.to_json_string()).my_extra_key).toBe(42);
  });

  test("invalid values are rejected with the key named", () => {
    expect(() => new Llama4TextConfig({ hidden_size: -1 })).toThrow(/"hidden_size" must be an integer >= 1, got -1/);
    expect(() => new Llama4TextConfig({ num_attention_heads: 6, num_key_value_heads: 4 })).toThrow(/multiple of num_key_value_heads/);
    expect(() => new Llama4TextConfig({ moe_layers: [99] })).toThrow(/"moe_layers" entry 99/);
    expect(() => new Llama4TextConfig({ rope_parameters: { rope_type: "yarn", rope_theta: 1 } })).toThrow(/"rope_type" must be one of/);
    expect(() => new Llama4TextConfig({ hidden_act: "gelu" })).toThrow(/"hidden_act" must be one of "silu"/);
  });

  test("a config.json of another architecture", async () => {
    const dir = mkdtempSync(join(tmpdir(), "llama4-cfg-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "bert" }));
    await expect(AutoConfig.from_pretrained(dir)).rejects.toThrow(/model_type "bert" is not a Llama 4 model/);
    rmSync(dir, { recursive: true });
  });
});

describe("Llama4TextModel", () => {
  test("last_hidden_state is the final normed hidden state of the causal LM", async () => {
    const base = await Llama4TextModel.from_pretrained(modelDir("tiny-llama4-f32"));
    const lm = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
    const ids = [[5, 9, 13, 200]];
    const a = await base.forward({ input_ids: ids });
    const b = await lm.forward({ input_ids: ids, output_hidden_states: true });
    expect(a.last_hidden_state.dims).toEqual([1, 4, 64]);
    expect(maxAbsDiff(a.last_hidden_state.data, b.hidden_states!.at(-1)!.data)).toBe(0);
  });
});

describe("progress_callback while loading", () => {
  // A layer quantized at load can take seconds on a real checkpoint: from_pretrained reports after each decoder layer
  // the bytes of the text model's tensors loaded so far, ending at all of them.
  test("one \"loading\" report per decoder layer, growing to every byte of the checkpoint's tensors", async () => {
    const dir = modelDir("tiny-llama4-f32");
    const reports: { status: string; file: string; loaded?: number; total?: number }[] = [];
    const model = await Llama4ForCausalLM.from_pretrained(dir, { dtype: "q8", progress_callback: (info) => reports.push(info) });
    const { header } = readRaw(join(dir, "model.safetensors"));
    const bytes = Object.values(header).reduce((n, e) => n + e.data_offsets[1] - e.data_offsets[0], 0);
    expect(reports).toHaveLength(model.text_config.num_hidden_layers);
    expect(reports.every((r) => r.status === "loading" && r.file === "weights" && r.total === bytes)).toBe(true);
    const loaded = reports.map((r) => r.loaded!);
    expect(loaded).toEqual([...loaded].sort((a, b) => a - b));
    expect(loaded.at(-1)).toBe(bytes);
    // A progress display that throws does not fail the load.
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    await Llama4ForCausalLM.from_pretrained(dir, { progress_callback: () => { throw new Error("display gone"); } });
    expect(warn.mock.calls.flat().join(" ")).toMatch(/progress_callback threw while loading .*display gone/);
    warn.mockRestore();
  });
});

describe("generation with the real tokenizer", () => {
  let tokenizer: PreTrainedTokenizer;
  let model: Llama4ForConditionalGeneration;
  let prompt: number[][];
  beforeAll(async () => {
    tokenizer = await AutoTokenizer.from_pretrained(TOKENIZER);
    model = await Llama4ForConditionalGeneration.from_pretrained(INSTRUCT, { dtype: torch.bfloat16 });
    prompt = [tokenizer.encode("The capital of France is")];
  });

  test("TextStreamer prints the new text, whole words at a time, equal to the decoded output", async () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    let out;
    try {
      out = await model.generate({ input_ids: prompt, max_new_tokens: 20, streamer: new TextStreamer(tokenizer, { skip_prompt: true }) });
    } finally {
      spy.mockRestore();
    }
    const expected = tokenizer.decode(Array.from(out.data.slice(prompt[0].length)));
    expect(writes.join("")).toBe(expected + "\n");
    expect(writes.length).toBeGreaterThan(2);
  });

  test("AsyncTextIteratorStreamer yields the text while generate runs", async () => {
    const streamer = new AsyncTextIteratorStreamer(tokenizer, { skip_prompt: true });
    const running = model.generate({ input_ids: prompt, max_new_tokens: 20, streamer });
    const pieces: string[] = [];
    for await (const piece of streamer) pieces.push(piece);
    const out = await running;
    expect(pieces.join("")).toBe(tokenizer.decode(Array.from(out.data.slice(prompt[0].length))));
  });

  test("a failed or cancelled generate ends the streamer: the iteration throws its error instead of waiting", async () => {
    // cancelled after the first piece of text
    const streamer = new AsyncTextIteratorStreamer(tokenizer, { skip_prompt: true });
    const running = model.generate({ input_ids: prompt, max_new_tokens: 500, min_new_tokens: 500, streamer });
    const pieces: string[] = [];
    const iterated = (async () => {
      for await (const piece of streamer) {
        pieces.push(piece);
        model.cancel();
      }
    })();
    await expect(running).rejects.toMatchObject({ name: "AbortError" });
    await expect(iterated).rejects.toMatchObject({ name: "AbortError" });
    expect(pieces.length).toBeGreaterThan(0);
    // failed before the first step (image features of the wrong dtype); a plain streamer gets end()
    const ended: string[] = [];
    const plain = { put: () => ended.push("put"), end: () => ended.push("end") };
    const badFeatures = new Tensor("int32", new Int32Array(8 * model.text_config.hidden_size), [8, model.text_config.hidden_size]);
    await expect(model.generate({ input_ids: prompt, image_features: badFeatures, streamer: plain })).rejects.toThrow(
      /image_features must be a float32 Tensor/,
    );
    expect(ended).toEqual(["end"]);
    // an error before the first step (here: a cache that is not one) ends the iterator too
    const early = new AsyncTextIteratorStreamer(tokenizer, { skip_prompt: true });
    const reading = (async () => {
      for await (const _ of early) void _;
    })();
    await expect(model.generate({ input_ids: prompt, streamer: early, cache: {} as never })).rejects.toThrow(/the cache must be a DynamicCache/);
    await expect(reading).rejects.toThrow(/the cache must be a DynamicCache/);
  });

  test("AsyncTextIteratorStreamer.on_error: the text held back is still read; after end() it changes nothing", async () => {
    const read = async (s: AsyncTextIteratorStreamer) => {
      const got: string[] = [];
      try {
        for await (const piece of s) got.push(piece);
        return { got, error: null };
      } catch (e) {
        return { got, error: (e as Error).message };
      }
    };
    const ids = tokenizer.encode("Hello wor", { add_special_tokens: false });
    const failing = new AsyncTextIteratorStreamer(tokenizer);
    ids.forEach((id) => failing.put([id]));
    failing.on_error(new Error("late"));
    const r0 = await read(failing);
    expect(r0.got.join("")).toBe(tokenizer.decode(ids)); // "wor", held back waiting for the word's end, included
    expect(r0.error).toBe("late");
    const ended = new AsyncTextIteratorStreamer(tokenizer);
    ids.forEach((id) => ended.put([id]));
    ended.end();
    ended.on_error(new Error("late"));
    const r = await read(ended);
    expect(r.error).toBeNull();
    expect(r.got.join("")).toBe(tokenizer.decode(ids));
  });

  test("stop_strings end generation at the token that completes the string", async () => {
    const free = await model.generate({ input_ids: prompt, max_new_tokens: 20 });
    const text = tokenizer.decode(Array.from(free.data.slice(prompt[0].length)));
    const stop = text.slice(8, 11); // a string that appears in the middle of the continuation
    const out = await model.generate({ input_ids: prompt, max_new_tokens: 20, stop_strings: stop, tokenizer });
    const got = tokenizer.decode(Array.from(out.data.slice(prompt[0].length)));
    expect(got.includes(stop)).toBe(true);
    expect(text.startsWith(got)).toBe(true);
    // without its last token the stop string is no longer complete
    const shorter = tokenizer.decode(Array.from(out.data.slice(prompt[0].length, -1)));
    expect(shorter.indexOf(stop)).toBe(-1);
  });

  test("eos: Llama 4's generation_config stops on <|eot|> and friends", () => {
    expect(model.generation_config.eos_token_id).toEqual([200001, 200007, 200008]);
    expect(tokenizer.convert_ids_to_tokens([200001, 200007, 200008])).toEqual(["<|end_of_text|>", "<|eom|>", "<|eot|>"]);
  });
});

describe("errors users meet first", () => {
  test("unknown task (with a suggestion)", async () => {
    await expect(pipeline("text-generaton" as "text-generation", { model: INSTRUCT })).rejects.toThrow(
      /unknown task "text-generaton" \(did you mean "text-generation"\?\)/,
    );
  });

  test("a message without role or content", async () => {
    const dir = mkdtempSync(join(tmpdir(), "llama4-pipe-"));
    cpSync(INSTRUCT, dir, { recursive: true });
    for (const f of ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]) cpSync(join(TOKENIZER, f), join(dir, f));
    const pipe = await pipeline("text-generation", { model: dir });
    await expect(pipe([{ content: "hi" } as never])).rejects.toThrow(/message 0 has no "role"/);
    await expect(pipe([{ role: "user", content: "hi" }, { role: "assistant" } as never])).rejects.toThrow(/message 1 \(assistant\) has no "content"/);
    await expect(pipe("hi", { max_new_tokns: 3 } as never)).rejects.toThrow(/unknown option 'max_new_tokns' \(did you mean 'max_new_tokens'\?\)/);
    await expect(pipe("hi", { max_new_tokens: -1 })).rejects.toThrow(/max_new_tokens must be an integer >= 1/);
    rmSync(dir, { recursive: true });
  });

  test("an unknown from_pretrained option (with a suggestion)", async () => {
    await expect(Llama4ForCausalLM.from_pretrained(INSTRUCT, { dtyp: "float32" } as never)).rejects.toThrow(
      /unknown option 'dtyp' \(did you mean 'dtype'\?\)/,
    );
  });

  test("missing tokenizer files", async () => {
    await expect(AutoTokenizer.from_pretrained(INSTRUCT)).rejects.toThrow(/missing tokenizer\.json/);
  });

  test("a model id not in the cache while offline", async () => {
    const home = mkdtempSync(join(tmpdir(), "llama4-offline-"));
    await expect(
      Llama4ForCausalLM.from_pretrained("meta-llama/Llama-4-Scout-17B-16E-Instruct", { cache_dir: home, local_files_only: true }),
    ).rejects.toThrow(/meta-llama\/Llama-4-Scout-17B-16E-Instruct is not in the cache/);
    rmSync(home, { recursive: true });
  });

  test("pipeline needs the tokenizer when given a loaded model", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
    await expect(pipeline("text-generation", { model })).rejects.toThrow(/pass the tokenizer too/);
  });
});
