// Inputs that used to kill, hang or silently break the process (issue 13's classes), each fed once: every one
// must end in a JS Error naming the file, key, tensor or argument at fault, promptly.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  AutoConfig,
  AutoTokenizer,
  Llama4ForCausalLM,
  Llama4ImageProcessor,
  load_image,
} from "../sdk";
import { get_best_fit } from "../sdk/models/llama4/image_processing_llama4";
import { native } from "../sdk/native";
import { decodeThinPng } from "../sdk/utils/png";
import sharp, { type Sharp } from "sharp";
import { crc32, deflateSync } from "node:zlib";
import { modelDir } from "./helpers/fixtures";

const F32 = modelDir("tiny-llama4-f32");
const TOKENIZER = join(__dirname, "..", "models", "llama4-tiny");
let scratch: string;
let counter = 0;

/** A copy of `source`'s files (those listed), edited by `edit`. */
function copyOf(source: string, files: string[], edit: (dir: string) => void = () => {}): string {
  const dir = join(scratch, `case${counter++}`);
  mkdirSync(dir);
  for (const f of files) copyFileSync(join(source, f), join(dir, f));
  edit(dir);
  return dir;
}
const CHECKPOINT = ["config.json", "generation_config.json", "model.safetensors"];
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"];

function editJson(path: string, change: (j: Record<string, any>) => void) {
  const j = JSON.parse(readFileSync(path, "utf8"));
  change(j);
  writeFileSync(path, JSON.stringify(j));
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "llama4-ts-robust-"));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("checked sizes", () => {
  test("heads x head_dim overflowing 64 bits is refused by the engine, naming the keys", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) =>
      editJson(join(d, "config.json"), (c) => {
        c.num_attention_heads = 2 ** 32;
        c.num_key_value_heads = 2 ** 32;
        c.head_dim = 2 ** 32;
      }),
    );
    // The engine's own check (the SDK's config check would stop it first).
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(
      /config\.json: num_attention_heads x head_dim: 4294967296 x 4294967296 overflows 64-bit arithmetic/,
    );
    await expect(Llama4ForCausalLM.from_pretrained(dir)).rejects.toThrow(
      /config\.json: num_attention_heads x head_dim x hidden_size: 4294967296 x 4294967296 x 64 = .* is more than/,
    );
  });

  test("a huge vocab_size is named, not shown as a wrapped shape", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) => editJson(join(d, "config.json"), (c) => (c.vocab_size = 1e30)));
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/"vocab_size" is 1e\+30, larger than any model's/);
    await expect(AutoConfig.from_pretrained(dir)).rejects.toThrow(/"vocab_size" is 1e\+30, more than the 1099511627776 it may be/);
  });

  test("num_hidden_layers of 1e9 without its per-layer lists is refused before they are built", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) =>
      editJson(join(d, "config.json"), (c) => {
        c.num_hidden_layers = 1e9;
        delete c.layer_types;
        delete c.no_rope_layers;
        delete c.moe_layers;
      }),
    );
    await expect(AutoConfig.from_pretrained(dir)).rejects.toThrow(/"num_hidden_layers" is 1000000000, more than the 65536 it may be/);
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/"num_hidden_layers" is 1000000000, more than the 65536 layers/);
  });

  test("a config value of the wrong type names its key", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) =>
      editJson(join(d, "config.json"), (c) => {
        c.rope_theta = "big";
        delete c.rope_parameters;
      }),
    );
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/config\.json: "rope_theta" must be a finite number/);
    // The SDK would read Scout's default sizes from a "llama4" config without text_config; the engine says so.
    const flat = copyOf(F32, CHECKPOINT, (d) => editJson(join(d, "config.json"), (c) => (c.model_type = "llama4")));
    await expect(Llama4ForCausalLM.from_pretrained(flat)).rejects.toThrow(/config\.json: model_type "llama4" needs a "text_config" object/);
    const typed = copyOf(F32, CHECKPOINT, (d) => editJson(join(d, "config.json"), (c) => (c.model_type = { a: 1 })));
    await expect(AutoConfig.from_pretrained(typed)).rejects.toThrow(/model_type a Object is not a Llama 4 model/);
  });

  test("new_cache(1e9) says what the cache would need instead of growing until killed", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(F32);
    // 2 (k, v) x 4 layers x 2 kv heads x 16 x 4 bytes = 1024 bytes a position and row.
    expect(() => model.new_cache(1e9)).toThrow(/new_cache\(1000000000\): one position of the KV cache for a batch of 1000000000 would need 953\.67 GiB/);
    expect(() => model.new_cache(Number.NaN)).toThrow(/new_cache: batch must be an integer >= 1, got NaN/);
    expect(model.new_cache(3).native.batch).toBe(3);
  });

  test("padding to max_length 2^32 is refused before the rows are built", async () => {
    const tok = await AutoTokenizer.from_pretrained(TOKENIZER);
    expect(() => tok("hello", { padding: "max_length", max_length: 2 ** 32 })).toThrow(
      /tokenizer: padding to 4294967296 positions: a row longer than 134217725 ids cannot be held/,
    );
    expect(tok("hello", { padding: "max_length", max_length: 12 }).input_ids).toHaveLength(12);
  });

  test("input ids beyond 32 bits are out of range, not 'not an integer'", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(F32);
    await expect(model.generate({ input_ids: [[1, 1e10]], max_new_tokens: 1 })).rejects.toThrow(
      /input_ids\[0\]\[1\] = 10000000000 is out of range \(token ids are 32-bit integers\)/,
    );
    await expect(model.generate({ input_ids: [[1, 2]], max_new_tokens: Number.NaN })).rejects.toThrow(/max_new_tokens must be an integer >= 1, got NaN/);
  });

  test("a logits processor that makes NaN scores is an error, not an arbitrary token", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(F32);
    const nan = { process: (_ids: number[][], scores: Float32Array[]) => scores.forEach((s) => s.fill(Number.NaN)) };
    await expect(model.generate({ input_ids: [[1, 2]], max_new_tokens: 2, logits_processor: [nan] })).rejects.toThrow(
      /generate: the scores of row 0 hold NaN at token 0 after the logits processors \(a Object\)/,
    );
  });

  test("num_return_sequences of 2^40 is priced before its rows are built", async () => {
    const model = await Llama4ForCausalLM.from_pretrained(F32);
    await expect(model.generate({ input_ids: [[1, 2]], max_new_tokens: 1, do_sample: true, num_return_sequences: 2 ** 40 })).rejects.toThrow(
      /generate: 1099511627776 sequences \(1 input_ids rows x num_return_sequences 1099511627776\), their logits alone, would need/,
    );
  });
});

describe("one bounded regular-file reader", () => {
  test.each(["config.json", "generation_config.json"])("%s as a FIFO is refused at once, not waited on", async (file) => {
    const dir = copyOf(F32, CHECKPOINT.filter((f) => f !== file), (d) => execFileSync("mkfifo", [join(d, file)]));
    const start = Date.now();
    await expect(Llama4ForCausalLM.from_pretrained(dir)).rejects.toThrow(new RegExp(`${file}: is not a regular file`));
    expect(Date.now() - start).toBeLessThan(5000);
  });

  test("config.json linked to /dev/zero is refused by the SDK and by the engine", async () => {
    const dir = copyOf(F32, ["generation_config.json", "model.safetensors"], (d) => symlinkSync("/dev/zero", join(d, "config.json")));
    await expect(AutoConfig.from_pretrained(dir)).rejects.toThrow(/config\.json: is not a regular file/);
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/config\.json: not a regular file/);
  });

  test("a model.safetensors that is a FIFO is refused by the engine", async () => {
    const dir = copyOf(F32, ["config.json"], (d) => execFileSync("mkfifo", [join(d, "model.safetensors")]));
    await expect(native().loadModel(dir, { dtype: "float32" })).rejects.toThrow(/case\d+\/model\.safetensors: not a regular file/);
  });

  test("tokenizer files and chat templates go through it too", async () => {
    const dir = copyOf(TOKENIZER, TOKENIZER_FILES.filter((f) => f !== "chat_template.jinja"), (d) =>
      symlinkSync("/dev/zero", join(d, "chat_template.jinja")),
    );
    await expect(AutoTokenizer.from_pretrained(dir)).rejects.toThrow(/chat_template\.jinja: is not a regular file/);
  });
});

describe("chat template limits", () => {
  const chat = [{ role: "user", content: "hi" }];
  let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  beforeAll(async () => {
    tok = await AutoTokenizer.from_pretrained(TOKENIZER);
  });

  test("range(10**9) ends in an error naming the template, not a V8 crash", () => {
    expect(() => tok.apply_chat_template(chat, { chat_template: "{% for i in range(10**9) %}x{% endfor %}", tokenize: false })).toThrow(
      /apply_chat_template: the chat_template option's template exceeds the rendering limits: range\(0, 1000000000, 1\) would make 1000000000 items/,
    );
  });

  test("a string doubled until it is huge is stopped", () => {
    const template = "{% set s = 'ab' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s }}";
    expect(() => tok.apply_chat_template(chat, { chat_template: template, tokenize: false })).toThrow(
      /exceeds the rendering limits: a string of \d+ characters, more than 67108864/,
    );
  });

  test("the tokenizer's own template is named by where it came from", () => {
    tok.chat_template = "{% for i in range(2000000) %}{% endfor %}";
    try {
      expect(() => tok.apply_chat_template(chat, { tokenize: false })).toThrow(
        new RegExp(`the chat template of ${TOKENIZER.replace(/[/.]/g, "\\$&")} exceeds the rendering limits`),
      );
    } finally {
      tok.chat_template = readFileSync(join(TOKENIZER, "chat_template.jinja"), "utf8");
    }
  });

  test("circular message content is named, not a stack overflow", () => {
    const part: { type: "text"; text: string; self?: unknown } = { type: "text", text: "hi" };
    const content = [part];
    part.self = content;
    expect(() => tok.apply_chat_template([{ role: "user", content }], { tokenize: false })).toThrow(
      /apply_chat_template: message 0\.content\[0\]\.self refers to itself/,
    );
  });
});

describe("tokenizer files", () => {
  test("a vocab id of 2^31 is refused, naming the file and token", async () => {
    const dir = copyOf(TOKENIZER, TOKENIZER_FILES, (d) => editJson(join(d, "tokenizer.json"), (t) => (t.model.vocab["zzz"] = 2 ** 31)));
    const start = Date.now();
    await expect(AutoTokenizer.from_pretrained(dir)).rejects.toThrow(/tokenizer\.json: model\.vocab: id of "zzz" must be an integer in \[0, 2\^31\)/);
    const far = copyOf(TOKENIZER, TOKENIZER_FILES, (d) => editJson(join(d, "tokenizer.json"), (t) => (t.model.vocab["zzz"] = 2 ** 30)));
    await expect(AutoTokenizer.from_pretrained(far)).rejects.toThrow(/tokenizer\.json: id 1073741824 of "zzz" is far past the \d+ tokens/);
    expect(Date.now() - start).toBeLessThan(5000);
  });

  test("malformed structures name the file", async () => {
    const merges = copyOf(TOKENIZER, TOKENIZER_FILES, (d) => editJson(join(d, "tokenizer.json"), (t) => (t.model.merges = { a: 1 })));
    await expect(AutoTokenizer.from_pretrained(merges)).rejects.toThrow(/tokenizer\.json: "model\.merges" must be a list/);
    const post = copyOf(TOKENIZER, TOKENIZER_FILES, (d) =>
      editJson(join(d, "tokenizer.json"), (t) => (t.post_processor = { type: "Sequence", processors: [null] })),
    );
    await expect(AutoTokenizer.from_pretrained(post)).rejects.toThrow(
      /case\d+: cannot build the tokenizer from tokenizer\.json and tokenizer_config\.json: Cannot read properties of null/,
    );
  });
});

describe("safetensors data section", () => {
  test("a header length one byte short (the byte being header padding) is refused, as safetensors does", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) => {
      const path = join(d, "model.safetensors");
      const buf = readFileSync(path);
      const n = Number(buf.readBigUInt64LE(0));
      const header = Buffer.from(buf.subarray(8, 8 + n).toString("utf8").trimEnd() + " ", "utf8");
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length - 1));
      writeFileSync(path, Buffer.concat([len, header, buf.subarray(8 + n)]));
    });
    await expect(Llama4ForCausalLM.from_pretrained(dir)).rejects.toThrow(
      /model\.safetensors: data section is \d+ bytes but its tensors cover \d+: the header length \(\d+\) or data_offsets are wrong/,
    );
  });

  test("a gap between tensors is refused", async () => {
    const dir = copyOf(F32, CHECKPOINT, (d) => {
      const path = join(d, "model.safetensors");
      const buf = readFileSync(path);
      writeFileSync(path, Buffer.concat([buf, Buffer.alloc(4)]));
    });
    await expect(Llama4ForCausalLM.from_pretrained(dir)).rejects.toThrow(/or the file has trailing bytes/);
  });
});

describe("images and processor options", () => {
  test("max_patches 1e6 is refused before any work", () => {
    expect(() => new Llama4ImageProcessor({ max_patches: 1e6 })).toThrow(/max_patches 1000000 is more than the 65536 tiles a canvas may have/);
    expect(() => new Llama4ImageProcessor({ max_patches: 60000 })).toThrow(
      /max_patches 60000 at size 336: the largest canvas would need 94\.63 GiB, more than this machine's/,
    );
  });

  test("thin PNGs decode to the pixels libvips gives, in every 8-bit colour type and filter", async () => {
    const width = 3, height = 70_000;
    const noise = Buffer.alloc(width * height * 4);
    for (let i = 0, x = 12345; i < noise.length; i++) noise[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    const variants: [string, (s: Sharp) => Sharp][] = [
      ["rgb", (s) => s.removeAlpha()],
      ["rgba", (s) => s],
      ["grey", (s) => s.removeAlpha().greyscale()],
      ["grey+alpha", (s) => s.greyscale()],
      ["palette", (s) => s.removeAlpha()],
    ];
    for (const [name, shape] of variants) {
      const png = await shape(sharp(noise, { raw: { width, height, channels: 4 }, limitInputPixels: false }))
        .png({ adaptiveFiltering: true, palette: name === "palette" }).toBuffer();
      const fast = decodeThinPng(png, 1e9);
      expect(fast, name).not.toBeNull();
      const ref = await sharp(png, { limitInputPixels: false }).toColourspace("srgb").removeAlpha().raw().toBuffer();
      expect(Buffer.from(fast!.data).equals(ref), name).toBe(true);
    }
  });

  test("a legal 1 x 100,000,000 image loads in seconds", async () => {
    const H = 1e8;
    const rows = Buffer.alloc(2 * H); // filter byte 0, one grey sample per row
    for (let y = 0; y < H; y++) rows[2 * y + 1] = y & 255;
    const chunk = (type: string, data: Buffer) => {
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      out.write(type, 4, "latin1");
      data.copy(out, 8);
      out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(1, 0);
    ihdr.writeUInt32BE(H, 4);
    ihdr[8] = 8; // bit depth; colour type 0 (grey)
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr),
      chunk("IDAT", deflateSync(rows, { level: 1 })), chunk("IEND", Buffer.alloc(0))]);
    const start = Date.now();
    const image = await load_image(png);
    expect(Date.now() - start).toBeLessThan(15_000);
    expect([image.width, image.height]).toEqual([1, H]);
    expect([...image.data.subarray(3 * 299, 3 * 301)]).toEqual([43, 43, 43, 44, 44, 44]);
  });

  test("long lists are reduced, not spread into arguments (which overflows the stack)", async () => {
    const many = Array.from({ length: 300_000 }, (_, i) => [14 * (1 + (i % 500)), 14 * (1 + Math.floor(i / 500))] as [number, number]);
    expect(get_best_fit([28, 28], many)).toEqual([28, 28]);
    const tok = await AutoTokenizer.from_pretrained(TOKENIZER);
    const texts = Array.from({ length: 150_000 }, () => "");
    expect((tok(texts, { padding: true, add_special_tokens: false }).input_ids as number[][]).length).toBe(150_000);
  });

  test("processor options that turn pixels into infinities are named", async () => {
    const processor = new Llama4ImageProcessor({ image_std: 1e-300 });
    await expect(processor.preprocess(join(__dirname, "fixtures", "images", "tiny.png"))).rejects.toThrow(
      /image_std \[1e-300,1e-300,1e-300\] turn byte 0 of channel 0 into -Infinity/,
    );
  });

  test("a malformed http URL names itself", async () => {
    await expect(load_image("http://[::1")).rejects.toThrow(/load_image: "http:\/\/\[::1" is not a valid URL/);
  });
});
