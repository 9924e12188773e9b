// The input surfaces of the SDK and engine, each a generator of cases. A case is made from a seeded rng alone,
// so (seed, surface, index) regenerates it anywhere. make(rng, ctx) writes what the case needs under ctx.dir and
// returns { hints, run }: run() exercises the surface and returns what came out (checked for NaN / infinity);
// an Error it throws must name one of `hints` (the file, key, option or argument the case broke).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";

import { EDGE_NUMBERS, jsonPaths, mutateBytes, mutateJson, mutateString, mutateValue } from "./mutate.mjs";

const ROOT = join(import.meta.dirname, "..");
const MODELS = join(ROOT, "test", "fixtures", "models");
export const F32 = join(MODELS, "tiny-llama4-f32");
const SHARDED = join(MODELS, "tiny-llama4-bf16-sharded");
export const TOKENIZER = join(ROOT, "models", "llama4-tiny");
const IMAGES = join(ROOT, "test", "fixtures", "images");
const IMAGE_FILES = ["tiny.png", "sliver.png", "red-circle.png", "rgba.png", "exif_rotate90.jpg", "grey.jpg", "icc_linear.jpg", "cmyk.jpg"];

const cache = new Map();
/** A file's bytes, read once per process. */
const bytesOf = (path) => {
  if (!cache.has(path)) cache.set(path, readFileSync(path));
  return cache.get(path);
};
const jsonOf = (path) => JSON.parse(bytesOf(path).toString("utf8"));

/** Links the files of `source` into `dir` except those in `written` (which the case writes itself). */
function linkAll(source, dir, files, written = []) {
  mkdirSync(dir, { recursive: true });
  for (const f of files) if (!written.includes(f)) symlinkSync(join(source, f), join(dir, f));
}

/** Replaces `file` in `dir` by something that is not a regular file of sane size. */
function oddFile(rng, dir, file) {
  const path = join(dir, file);
  switch (rng.int(5)) {
    case 0: execFileSync("mkfifo", [path]); return "fifo";
    case 1: symlinkSync("/dev/zero", path); return "/dev/zero";
    case 2: mkdirSync(path); return "directory";
    case 3: writeFileSync(path, ""); return "empty";
    default: symlinkSync(join(dir, "missing-target"), path); return "dangling symlink";
  }
}

const PROMPT = [[1, 5, 9, 2]];

/** Loads the checkpoint in `dir` and runs one forward pass; the logits come back for the finiteness check. */
async function loadAndForward(sdk, dir) {
  const model = await sdk.Llama4ForCausalLM.from_pretrained(dir);
  const out = await model.forward({ input_ids: PROMPT });
  return out.logits;
}

const TEXT_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "intermediate_size_mlp", "num_hidden_layers", "num_attention_heads",
  "num_key_value_heads", "head_dim", "num_local_experts", "num_experts_per_tok", "attention_chunk_size", "no_rope_layers", "moe_layers",
  "layer_types", "rope_theta", "rope_parameters", "rms_norm_eps", "floor_scale", "attn_scale", "interleave_moe_layer_step",
  "no_rope_layer_interval", "tie_word_embeddings", "model_type", "text_config", "vision_config", "quantization_config", "max_position_embeddings"];

/** Applies 1-3 mutations to a JSON document; returns the new root and the keys touched (the hints). */
function mutateDocument(rng, doc, keys, pathsOf = jsonPaths) {
  const touched = [];
  for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
    const step = mutateJson(rng, doc, keys, pathsOf(doc));
    doc = step.root;
    touched.push(...step.touched);
  }
  return { doc, touched };
}

export const SURFACES = {
  "safetensors-header": {
    weight: 3,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "ckpt");
      linkAll(F32, dir, ["config.json", "generation_config.json"]);
      const buf = bytesOf(join(F32, "model.safetensors"));
      const n = Number(buf.readBigUInt64LE(0));
      let out;
      const kind = rng.int(3);
      if (kind === 0) {
        // The header as JSON: entries' dtype, shape, data_offsets changed, removed, added.
        const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
        const { doc } = mutateDocument(rng, header, ["dtype", "shape", "data_offsets", "__metadata__", "model.norm.weight"]);
        const json = Buffer.from(typeof doc === "string" ? doc : JSON.stringify(doc) ?? "null");
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(json.length));
        out = Buffer.concat([len, json, buf.subarray(8 + n)]);
      } else if (kind === 1) {
        // The length field: off by a little, or absurd.
        out = Buffer.from(buf);
        const delta = rng.pick([-1, 1, -2, 2, -8, 8, 1e6, -n + 1]);
        out.writeBigUInt64LE(BigInt(Math.max(0, n + delta)), 0);
        if (rng.chance(0.3)) out.writeBigUInt64LE(BigInt(rng.pick(EDGE_NUMBERS.filter((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 63))), 0);
      } else {
        out = mutateBytes(rng, buf, { from: 0, to: 8 + n });
      }
      writeFileSync(join(dir, "model.safetensors"), out);
      return { hints: ["model.safetensors", dir], run: () => loadAndForward(ctx.sdk, dir) };
    },
  },

  "safetensors-data": {
    weight: 2,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "ckpt");
      linkAll(F32, dir, ["config.json", "generation_config.json"]);
      const buf = bytesOf(join(F32, "model.safetensors"));
      const start = 8 + Number(buf.readBigUInt64LE(0));
      let out;
      if (rng.chance(0.5)) {
        // Non-finite or huge float32 values at aligned offsets of the (all-F32) data.
        out = Buffer.from(buf);
        for (let i = 0, n = 1 + rng.int(4); i < n; i++) {
          const at = start + 4 * rng.int((buf.length - start) / 4);
          out.writeFloatLE(rng.pick([NaN, Infinity, -Infinity, 3e38, -3e38, 1e-45]), at);
        }
      } else {
        out = mutateBytes(rng, buf, { from: start });
      }
      writeFileSync(join(dir, "model.safetensors"), out);
      return { hints: ["model.safetensors", dir, "logits"], run: () => loadAndForward(ctx.sdk, dir) };
    },
  },

  "index-json": {
    weight: 2,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "ckpt");
      const shards = [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`);
      const files = ["config.json", "generation_config.json", "model.safetensors.index.json", ...shards];
      const hints = ["model.safetensors.index.json", dir];
      if (rng.chance(0.15)) {
        linkAll(SHARDED, dir, files, ["model.safetensors.index.json"]);
        hints.push(oddFile(rng, dir, "model.safetensors.index.json"));
      } else if (rng.chance(0.2)) {
        // A shard broken instead of the index.
        const shard = rng.pick(shards);
        linkAll(SHARDED, dir, files, [shard]);
        if (rng.chance(0.3)) oddFile(rng, dir, shard);
        else writeFileSync(join(dir, shard), mutateBytes(rng, bytesOf(join(SHARDED, shard))));
        hints.push(shard);
      } else {
        linkAll(SHARDED, dir, files, ["model.safetensors.index.json"]);
        const index = jsonOf(join(SHARDED, "model.safetensors.index.json"));
        const names = Object.keys(index.weight_map);
        for (let i = 0, n = 1 + rng.int(3); i < n && index.weight_map && typeof index.weight_map === "object"; i++) {
          const name = rng.pick(names);
          const op = rng.int(6);
          if (op === 0) delete index.weight_map[name];
          else if (op === 1) index.weight_map[name] = rng.pick(["../config.json", "/dev/zero", "missing.safetensors", "", "model.safetensors", "config.json", "."]);
          else if (op === 2) index.weight_map[name] = rng.pick(shards);
          else if (op === 3) index.weight_map[`${name}.extra`] = rng.pick(shards);
          else if (op === 4) index.weight_map[name] = mutateValue(rng, index.weight_map[name]);
          else index.weight_map = mutateValue(rng, index.weight_map);
          hints.push(name);
        }
        writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
      }
      return { hints, run: () => loadAndForward(ctx.sdk, dir) };
    },
  },

  "config-json": {
    weight: 4,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "ckpt");
      linkAll(F32, dir, ["generation_config.json", "model.safetensors"]);
      const hints = ["config.json"];
      if (rng.chance(0.08)) {
        hints.push(oddFile(rng, dir, "config.json"));
      } else {
        const { doc, touched } = mutateDocument(rng, jsonOf(join(F32, "config.json")), TEXT_KEYS);
        hints.push(...touched);
        writeFileSync(join(dir, "config.json"), rng.chance(0.05) ? mutateString(rng, JSON.stringify(doc)) : JSON.stringify(doc) ?? "");
      }
      return { hints, run: () => loadAndForward(ctx.sdk, dir) };
    },
  },

  "generation-config": {
    weight: 2,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "ckpt");
      linkAll(F32, dir, ["config.json", "model.safetensors"]);
      const hints = ["generation_config.json", "generate"];
      if (rng.chance(0.1)) {
        hints.push(oddFile(rng, dir, "generation_config.json"));
      } else {
        const keys = ["max_new_tokens", "max_length", "min_new_tokens", "min_length", "do_sample", "temperature", "top_k", "top_p", "min_p",
          "repetition_penalty", "eos_token_id", "pad_token_id", "bos_token_id", "num_beams", "num_return_sequences", "stop_strings",
          "cache_implementation", "output_scores", "return_dict_in_generate"];
        const { doc, touched } = mutateDocument(rng, jsonOf(join(F32, "generation_config.json")), keys);
        hints.push(...touched);
        writeFileSync(join(dir, "generation_config.json"), JSON.stringify(doc) ?? "");
      }
      return {
        hints,
        async run() {
          const model = await ctx.sdk.Llama4ForCausalLM.from_pretrained(dir);
          // max_new_tokens given, so that a legal but huge max_length in the file does not make a long run.
          return model.generate({ input_ids: PROMPT, max_new_tokens: 3, return_dict_in_generate: true, output_logits: true });
        },
      };
    },
  },

  "tokenizer-json": {
    weight: 3,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "tok");
      linkAll(TOKENIZER, dir, ["tokenizer_config.json", "chat_template.jinja"]);
      const json = structuredClone(jsonOf(join(TOKENIZER, "tokenizer.json")));
      const hints = ["tokenizer.json", "tokenizer_config.json"];
      // Paths into the parts that build the tokenizer, with a few vocabulary and merge entries (not all 10k).
      const pathsOf = (doc) => {
        const paths = [[]];
        if (!doc || typeof doc !== "object") return paths;
        for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens", "model"]) {
          if (key === "model" && doc.model && typeof doc.model === "object") {
            paths.push(["model"], ...Object.keys(doc.model).filter((k) => k !== "vocab" && k !== "merges").map((k) => ["model", k]));
            if (doc.model.vocab && typeof doc.model.vocab === "object") {
              const tokens = Object.keys(doc.model.vocab);
              paths.push(["model", "vocab"]);
              for (let i = 0; i < 4 && tokens.length; i++) paths.push(["model", "vocab", tokens[rng.int(tokens.length)]]);
            }
            if (Array.isArray(doc.model.merges) && doc.model.merges.length) {
              paths.push(["model", "merges"], ["model", "merges", rng.int(doc.model.merges.length)]);
            }
          } else if (doc[key] !== undefined) {
            paths.push(...jsonPaths(doc[key], 200).map((p) => [key, ...p]));
          }
        }
        return paths;
      };
      const { doc, touched } = mutateDocument(rng, json, ["model", "added_tokens", "normalizer", "pre_tokenizer", "decoder"], pathsOf);
      hints.push(...touched);
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(doc) ?? "");
      const text = rng.pick(["Hello world", "", "  spaces  ", "<|begin_of_text|>hi", "\u{1F600} emoji", "a".repeat(2000)]);
      return {
        hints,
        async run() {
          const tok = await ctx.sdk.AutoTokenizer.from_pretrained(dir);
          const ids = tok.encode(text);
          return { ids, text: tok.decode(ids) };
        },
      };
    },
  },

  "tokenizer-config": {
    weight: 2,
    async make(rng, ctx) {
      const dir = join(ctx.dir, "tok");
      linkAll(TOKENIZER, dir, ["tokenizer.json", "chat_template.jinja"]);
      const keys = ["bos_token", "eos_token", "pad_token", "unk_token", "padding_side", "truncation_side", "model_max_length",
        "chat_template", "extra_special_tokens", "additional_special_tokens", "model_input_names", "clean_up_tokenization_spaces"];
      const hints = ["tokenizer_config.json", "tokenizer"];
      if (rng.chance(0.1)) {
        hints.push(oddFile(rng, dir, "tokenizer_config.json"));
      } else {
        const { doc, touched } = mutateDocument(rng, jsonOf(join(TOKENIZER, "tokenizer_config.json")), keys);
        hints.push(...touched);
        writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(doc) ?? "");
      }
      return {
        hints,
        async run() {
          const tok = await ctx.sdk.AutoTokenizer.from_pretrained(dir);
          const chat = tok.apply_chat_template([{ role: "user", content: "hi" }], { add_generation_prompt: true, tokenize: false });
          return { chat, batch: tok(["a b", "c"], { padding: true }).input_ids };
        },
      };
    },
  },

  "chat-template": {
    weight: 3,
    async make(rng, ctx) {
      const real = bytesOf(join(TOKENIZER, "chat_template.jinja")).toString("utf8");
      const n = rng.pick([0, 1, 3, 10, 100, 1000, 100000, 10 ** 9]);
      const snippets = [
        `{% for i in range(${n}) %}{{ i }}{% endfor %}`,
        `{% for i in range(${n}) %}{% for j in range(${n}) %}{% endfor %}{% endfor %}`,
        `{% set s = 'ab' %}{% for i in range(${Math.min(n, 64)}) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}`,
        `{% set ns = namespace(x=[]) %}{% for i in range(${Math.min(n, 40)}) %}{% set ns.x = ns.x + ns.x + [i] %}{% endfor %}{{ ns.x|length }}`,
        "{{ raise_exception('custom failure') }}",
        "{{ messages[0]['content'] | upper }}{{ undefined_thing.attr }}",
        "{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}",
        "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
        "{{ messages | tojson }}",
        "{% if %}",
        "{{ 1 / 0 }}",
        "{{ 'x' * " + n + " }}",
        "{{ strftime_now('%Y %B %d') }}",
      ];
      const template = rng.chance(0.4) ? mutateString(rng, real) : rng.chance(0.5) ? rng.pick(snippets) : rng.pick(snippets) + rng.pick(snippets);
      const tokenize = rng.chance(0.5);
      return {
        hints: ["chat template", "chat_template", "apply_chat_template"],
        run: async () => (await ctx.tokenizer()).apply_chat_template([{ role: "user", content: "hi" }], { chat_template: template, tokenize }),
      };
    },
  },

  "chat-messages": {
    weight: 3,
    async make(rng, ctx) {
      const base = [
        { role: "system", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "hi" }, { type: "image" }] },
        { role: "assistant", content: "hello" },
        { role: "user", content: "again" },
      ];
      let chat = structuredClone(base).slice(0, 1 + rng.int(4));
      const hints = ["apply_chat_template", "message", "conversation", "content", "role"];
      const op = rng.int(6);
      if (op === 0) {
        const { doc, touched } = mutateDocument(rng, chat, ["role", "content", "type", "text", "tool_calls", "image"]);
        chat = doc;
        hints.push(...touched);
      } else if (op === 1) {
        const c = chat[chat.length - 1];
        c.content = [{ type: "text", text: "x" }];
        c.content[0].loop = rng.chance(0.5) ? c : c.content; // circular
      } else if (op === 2) {
        let deep = "x";
        for (let i = 0, n = rng.pick([10, 100, 10000]); i < n; i++) deep = [deep];
        chat[0].content = deep;
      } else if (op === 3) {
        // Long but legal: tokenizing costs about 2 s a MB, so the size stays below what the time limit allows.
        chat[0].content = "x".repeat(rng.pick([1, 1000, 1e5, 1e6]));
      } else if (op === 4) {
        chat = rng.pick([null, undefined, "hi", [], [[]], [[null]], 42, { role: "user" }]);
      }
      const options = { add_generation_prompt: rng.chance(0.5), tokenize: rng.chance(0.5) };
      if (rng.chance(0.5)) {
        const key = rng.pick(["add_generation_prompt", "continue_final_message", "tokenize", "return_dict", "return_tensors", "padding",
          "truncation", "max_length", "tools", "documents", "tokenizer_kwargs", "chat_template", "date_string", "add_generation_promt"]);
        options[key] = mutateValue(rng, options[key] ?? 1);
        hints.push(key);
      }
      return { hints, run: async () => (await ctx.tokenizer()).apply_chat_template(chat, options) };
    },
  },

  "image-bytes": {
    weight: 3,
    async make(rng, ctx) {
      let bytes;
      const hints = ["load_image", "image", "Llama4ImageProcessor"];
      if (rng.chance(0.25)) {
        bytes = png(rng.pick([1, 2, 3, 100, 1000, 100000, 2 ** 31 - 1]), rng.pick([1, 2, 3, 100, 1000, 100000, 2 ** 31 - 1]), rng);
      } else {
        bytes = bytesOf(join(IMAGES, rng.pick(IMAGE_FILES)));
        for (let i = 0, n = 1 + rng.int(3); i < n; i++) bytes = mutateBytes(rng, bytes);
      }
      const options = {};
      if (rng.chance(0.3)) {
        const key = rng.pick(["max_patches", "size", "resize_to_max_canvas", "image_mean", "image_std", "rescale_factor", "do_normalize",
          "do_rescale", "resample", "do_resize", "return_tensors"]);
        options[key] = key === "size" && rng.chance(0.5) ? { height: mutateValue(rng, 112), width: mutateValue(rng, 112) } : mutateValue(rng, 4);
        hints.push(key);
      }
      return {
        hints,
        run: async () => (await ctx.imageProcessor()).preprocess(bytes, options),
      };
    },
  },

  "image-paths-urls": {
    weight: 2,
    async make(rng, ctx) {
      mkdirSync(ctx.dir, { recursive: true });
      const kinds = [
        () => join(ctx.dir, "missing.png"),
        () => ctx.dir,
        () => { const p = join(ctx.dir, "f.png"); oddFile(rng, ctx.dir, "f.png"); return p; },
        () => `file://${join(IMAGES, rng.pick(IMAGE_FILES))}`,
        () => `file://${join(ctx.dir, "nope.png")}`,
        () => `file:///%00`,
        () => join(IMAGES, rng.pick(IMAGE_FILES)) + "\u0000",
        () => "x".repeat(rng.pick([10, 5000])),
        () => `${ctx.server}/${rng.pick(["ok.png", "missing", "error", "redirect-loop", "huge", "endless", "slow", "html", "truncated", "empty"])}`,
        () => rng.pick(["http://[::1", "http://", "https://127.0.0.1:1/x.png", "ftp://example.com/a.png", "data:image/png;base64,!!!!",
          "data:text/plain;base64,aGk=", "data:image/png;base64," + bytesOf(join(IMAGES, "tiny.png")).toString("base64").slice(0, 50)]),
      ];
      const input = rng.pick(kinds)();
      return { hints: ["load_image"], run: () => ctx.sdk.load_image(input, { timeout: 20 }) };
    },
  },

  "generate-options": {
    weight: 4,
    async make(rng, ctx) {
      const options = { input_ids: [[1, 5, 9, 2]], max_new_tokens: 3 };
      const hints = ["generate", "input_ids"];
      const keys = ["max_new_tokens", "max_length", "min_new_tokens", "min_length", "do_sample", "temperature", "top_k", "top_p",
        "min_p", "repetition_penalty", "eos_token_id", "pad_token_id", "num_return_sequences", "stop_strings", "num_beams",
        "attention_mask", "input_ids", "logits_processor", "stopping_criteria", "cache", "past_key_values", "output_scores",
        "return_dict_in_generate", "cache_implementation", "prefill_chunk_size", "max_new_token", "generator", "streamer"];
      for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
        const key = rng.pick(keys);
        hints.push(key);
        if (key === "input_ids" || key === "attention_mask") {
          const rows = rng.pick([0, 1, 2, 3]), cols = rng.pick([0, 1, 4, 64, 300]);
          options[key] = rng.chance(0.2) ? mutateValue(rng, 1) : Array.from({ length: rows }, () =>
            Array.from({ length: cols }, () => (rng.chance(0.1) ? mutateValue(rng, 1) : rng.int(key === "attention_mask" ? 2 : 300))));
        } else if (key === "logits_processor" || key === "stopping_criteria") {
          options[key] = rng.pick([[{}], [null], "x", [{ process: () => { throw new TypeError("boom"); } }],
            [{ process: (_ids, scores) => scores.forEach((s) => s.fill(NaN)) }], [{ done: () => "yes" }], [{ done: () => [] }]]);
        } else if (key === "cache" || key === "past_key_values" || key === "generator" || key === "streamer") {
          options[key] = rng.pick([{}, 1, "x", { native: {} }, { put: 1 }]);
        } else {
          options[key] = mutateValue(rng, options[key] ?? 1);
        }
      }
      // Legal but long generations are not failures; keep them short.
      for (const key of ["max_new_tokens", "max_length", "min_new_tokens", "min_length"]) {
        if (Number.isInteger(options[key]) && options[key] > 40) options[key] = 40;
      }
      return { hints, run: async () => (await ctx.model()).generate(options) };
    },
  },
};

/** A PNG of any declared size with a tiny (wrong-sized) body, or a valid thin one when the size is small. */
function png(width, height, rng) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = rng.pick([0, 2, 6]);
  const channels = { 0: 1, 2: 3, 6: 4 }[ihdr[9]];
  const rows = width * height <= 4e6 ? height : 1;
  const raw = Buffer.alloc(rows * (1 + width * channels) * (width * height <= 4e6 ? 1 : 0) + 16, 0x40);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0))]);
}
