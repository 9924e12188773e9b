// The Llama 4 tokenizer against transformers: every golden in llama4-tokenizer-goldens.json was
// computed by transformers' AutoTokenizer on the same files (see fixtures/make_tokenizer_fixtures.py).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { AutoTokenizer, BatchEncoding, PreTrainedTokenizer, type ChatMessage } from "../sdk/tokenization_utils";
import { Tensor } from "../sdk/tensor";
import { checkOptions } from "../sdk/utils/options";
import { FIXTURES } from "./helpers/fixtures";

const TOKENIZER_DIR = join(FIXTURES, "llama4-tokenizer");

interface Goldens {
  properties: Record<string, unknown> & {
    convert_tokens_to_ids: { tokens: string[]; ids: (number | null)[] };
    convert_ids_to_tokens: { ids: number[]; tokens: (string | null)[] };
    tokenize: { text: string; tokens: string[] };
  };
  encodings: { text: string; ids: number[]; ids_with_special: number[]; decoded: string }[];
  chats: {
    name: string;
    messages: ChatMessage[];
    kwargs: Record<string, unknown>;
    add_generation_prompt: boolean;
    rendered: string;
    input_ids: number[];
    attention_mask: number[];
  }[];
  chat_batches: { conversations: ChatMessage[][]; padding_side: "left" | "right"; rendered: string[]; input_ids: number[][]; attention_mask: number[][] }[];
  batches: { texts: string | string[]; options: Record<string, unknown>; input_ids: number[] | number[][]; attention_mask: number[] | number[][] }[];
  decodes: { ids: number[]; skip_false: string; skip_true: string }[];
  single_token_decodes: { ids: number[]; texts: string[] };
  batch_decode: { ids: number[][]; skip_false: string[]; skip_true: string[] };
}

const goldens: Goldens = JSON.parse(readFileSync(join(FIXTURES, "llama4-tokenizer-goldens.json"), "utf8"));
let tok: PreTrainedTokenizer;

beforeAll(async () => {
  tok = await AutoTokenizer.from_pretrained(TOKENIZER_DIR);
});

describe("loading and properties", () => {
  test("from_pretrained gives a callable PreTrainedTokenizer", () => {
    expect(typeof tok).toBe("function");
    expect(tok).toBeInstanceOf(PreTrainedTokenizer);
    expect(tok("Hello")).toEqual(tok.__call__("Hello"));
  });

  test("properties match transformers", () => {
    const p = goldens.properties;
    expect(tok.vocab_size).toBe(p.vocab_size);
    expect(tok.__len__()).toBe(p.len);
    expect(tok.model_max_length).toBe(p.model_max_length);
    expect(tok.padding_side).toBe(p.padding_side);
    expect(tok.bos_token).toBe(p.bos_token);
    expect(tok.bos_token_id).toBe(p.bos_token_id);
    expect(tok.eos_token).toBe(p.eos_token);
    expect(tok.eos_token_id).toBe(p.eos_token_id);
    expect(tok.pad_token).toBe(p.pad_token);
    expect(tok.pad_token_id).toBe(p.pad_token_id);
    expect(tok.unk_token).toBe(p.unk_token);
    expect(tok.unk_token_id).toBe(p.unk_token_id);
    expect(tok.all_special_ids).toEqual(p.all_special_ids);
    expect(tok.all_special_tokens).toEqual(p.all_special_tokens);
    expect(tok.convert_tokens_to_ids(p.convert_tokens_to_ids.tokens)).toEqual(p.convert_tokens_to_ids.ids);
    expect(tok.convert_tokens_to_ids("<|eot|>")).toBe(200008);
    expect(tok.convert_ids_to_tokens(p.convert_ids_to_tokens.ids)).toEqual(p.convert_ids_to_tokens.tokens);
    expect(tok.convert_ids_to_tokens(200090)).toBe("<|image|>");
    expect(tok.convert_ids_to_tokens(10_000_000)).toBeNull();
    expect(tok.tokenize(p.tokenize.text)).toEqual(p.tokenize.tokens);
    expect(tok.chat_template).toContain("<|header_start|>");
  });
});

describe("encoding the corpus", () => {
  test(`ids identical to transformers on all ${goldens.encodings.length} strings`, () => {
    let plain = 0;
    let special = 0;
    let decoded = 0;
    const mismatches: string[] = [];
    for (const e of goldens.encodings) {
      const ids = tok(e.text, { add_special_tokens: false }).input_ids;
      const withSpecial = tok(e.text).input_ids;
      const text = tok.decode(e.ids);
      if (JSON.stringify(ids) === JSON.stringify(e.ids)) plain++;
      else mismatches.push(`ids ${JSON.stringify(e.text)}`);
      if (JSON.stringify(withSpecial) === JSON.stringify(e.ids_with_special)) special++;
      else mismatches.push(`ids_with_special ${JSON.stringify(e.text)}`);
      if (text === e.decoded) decoded++;
      else mismatches.push(`decode ${JSON.stringify(e.text)} -> ${JSON.stringify(text)}`);
    }
    const n = goldens.encodings.length;
    const pct = (k: number) => `${k}/${n} (${((100 * k) / n).toFixed(2)}%)`;
    console.log(`tokenizer parity: ids ${pct(plain)}, ids with special tokens ${pct(special)}, decode ${pct(decoded)}`);
    expect(mismatches.slice(0, 20)).toEqual([]);
    expect(plain).toBe(n);
    expect(special).toBe(n);
    expect(decoded).toBe(n);
  });

  test("encode() and batched calls agree with the single-string call", () => {
    const sample = goldens.encodings.slice(0, 200);
    expect(tok.encode(sample[10].text)).toEqual(sample[10].ids_with_special);
    expect(tok.encode(sample[10].text, { add_special_tokens: false })).toEqual(sample[10].ids);
    const batch = tok(sample.map((e) => e.text), { add_special_tokens: false });
    expect(batch.input_ids).toEqual(sample.map((e) => e.ids));
    expect(batch.attention_mask).toEqual(sample.map((e) => e.ids.map(() => 1)));
  });

  test("the empty string and the empty batch", () => {
    expect(tok("")).toEqual({ input_ids: [200000], attention_mask: [1] });
    expect(tok("", { add_special_tokens: false })).toEqual({ input_ids: [], attention_mask: [] });
    expect(tok([])).toEqual({ input_ids: [], attention_mask: [] });
  });
});

describe("chat template", () => {
  test(`renders all ${goldens.chats.length} conversations as transformers does`, () => {
    let same = 0;
    for (const c of goldens.chats) {
      const rendered = tok.apply_chat_template(c.messages, { ...c.kwargs, add_generation_prompt: c.add_generation_prompt, tokenize: false });
      expect(rendered, `${c.name} (add_generation_prompt=${c.add_generation_prompt})`).toBe(c.rendered);
      same++;
    }
    expect(same).toBe(goldens.chats.length);
  });

  test("tokenized renderings match (return_dict default and return_dict: false)", () => {
    for (const c of goldens.chats) {
      const label = `${c.name} (add_generation_prompt=${c.add_generation_prompt})`;
      const out = tok.apply_chat_template(c.messages, { ...c.kwargs, add_generation_prompt: c.add_generation_prompt });
      expect(out, label).toBeInstanceOf(BatchEncoding);
      expect(out.input_ids, label).toEqual(c.input_ids);
      expect(out.attention_mask, label).toEqual(c.attention_mask);
      const ids = tok.apply_chat_template(c.messages, { ...c.kwargs, add_generation_prompt: c.add_generation_prompt, return_dict: false });
      expect(ids, label).toEqual(c.input_ids);
    }
  });

  test("a batch of conversations, padded left and right", () => {
    for (const b of goldens.chat_batches) {
      expect(tok.apply_chat_template(b.conversations, { add_generation_prompt: true, tokenize: false })).toEqual(b.rendered);
      tok.padding_side = b.padding_side;
      try {
        const out = tok.apply_chat_template(b.conversations, { add_generation_prompt: true, padding: true });
        expect(out.input_ids).toEqual(b.input_ids);
        expect(out.attention_mask).toEqual(b.attention_mask);
      } finally {
        tok.padding_side = "right";
      }
    }
  });

  test("return_tensors 'pt'", () => {
    const c = goldens.chats[1];
    const out = tok.apply_chat_template(c.messages, { add_generation_prompt: c.add_generation_prompt, return_tensors: "pt" });
    expect(out.input_ids).toBeInstanceOf(Tensor);
    expect(out.input_ids.dims).toEqual([1, c.input_ids.length]);
    expect(out.input_ids.dtype).toBe("int32");
    expect(out.input_ids.tolist()).toEqual([c.input_ids]);
    expect(out.attention_mask.dims).toEqual([1, c.input_ids.length]);
    const ids = tok.apply_chat_template(c.messages, { add_generation_prompt: c.add_generation_prompt, return_tensors: "pt", return_dict: false });
    expect(ids).toBeInstanceOf(Tensor);
    expect(ids.tolist()).toEqual([c.input_ids]);
  });

  test("a chat_template option replaces the tokenizer's template", () => {
    const out = tok.apply_chat_template([{ role: "user", content: "x" }], {
      chat_template: "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}",
      tokenize: false,
    });
    expect(out).toBe("[user:x]<|eot|>");
  });

  test("template variables pass through; python-style globals exist", () => {
    const out = tok.apply_chat_template([{ role: "user", content: "x" }], {
      chat_template: "{{ greeting }} {{ range(3) | join(',') }} {{ strftime_now('%Y') | length }}",
      greeting: "hi",
      tokenize: false,
    });
    expect(out).toBe("hi 0,1,2 4");
  });
});

describe("padding and truncation", () => {
  test(`all ${goldens.batches.length} batch cases match transformers`, () => {
    for (const b of goldens.batches) {
      const out = tok(b.texts as string[], b.options);
      const label = `${JSON.stringify(b.texts)} ${JSON.stringify(b.options)}`;
      expect(out.input_ids, label).toEqual(b.input_ids);
      expect(out.attention_mask, label).toEqual(b.attention_mask);
    }
  });

  test("truncation_side left keeps the end", () => {
    tok.truncation_side = "left";
    try {
      expect(tok(["Hello world again", "Hi"], { truncation: true, max_length: 3 }).input_ids).toEqual([[200000, 3817, 3357], [200000, 25181]]);
    } finally {
      tok.truncation_side = "right";
    }
  });

  test("pad_to_multiple_of", () => {
    const out = tok(["Hello world again", "Hi"], { padding: true, pad_to_multiple_of: 8 });
    expect(out.input_ids).toEqual([
      [200000, 19873, 3817, 3357, 201134, 201134, 201134, 201134],
      [200000, 25181, 201134, 201134, 201134, 201134, 201134, 201134],
    ]);
    expect(() => tok(["a"], { padding: true, truncation: true, max_length: 5, pad_to_multiple_of: 4 })).toThrow(/not a multiple of pad_to_multiple_of/);
  });

  test("return_tensors 'pt' shapes", () => {
    const texts = ["Hello world", "A somewhat longer sentence here", "Hi"];
    const out = tok(texts, { padding: true, return_tensors: "pt" });
    const longest = Math.max(...texts.map((t) => tok.encode(t).length));
    expect(out.input_ids).toBeInstanceOf(Tensor);
    expect(out.input_ids.dims).toEqual([3, longest]);
    expect(out.attention_mask.dims).toEqual([3, longest]);
    expect(out.input_ids.slice(2, null).tolist()).toEqual(tok(texts[2], { padding: "max_length", max_length: longest }).input_ids);
    const one = tok("Hello", { return_tensors: "pt" });
    expect(one.input_ids.dims).toEqual([1, 2]);
    expect(one.input_ids.tolist()).toEqual([[200000, 19873]]);
    expect(tok.encode("Hello", { return_tensors: "pt" }).dims).toEqual([1, 2]);
    expect(one.to("cpu")).toBe(one);
    expect(Object.keys({ ...one })).toEqual(["input_ids", "attention_mask"]);
    expect(Object.keys(tok("x", { return_attention_mask: false }))).toEqual(["input_ids"]);
  });
});

describe("decoding", () => {
  test("skip_special_tokens false/true as transformers", () => {
    for (const d of goldens.decodes) {
      expect(tok.decode(d.ids), JSON.stringify(d.ids)).toBe(d.skip_false);
      expect(tok.decode(d.ids, { skip_special_tokens: false })).toBe(d.skip_false);
      expect(tok.decode(d.ids, { skip_special_tokens: true }), JSON.stringify(d.ids)).toBe(d.skip_true);
    }
  });

  test("single tokens, partial UTF-8 included", () => {
    const { ids, texts } = goldens.single_token_decodes;
    expect(ids.map((id) => tok.decode(id))).toEqual(texts);
  });

  test("batch_decode of number[][] and of a Tensor", () => {
    const b = goldens.batch_decode;
    expect(tok.batch_decode(b.ids)).toEqual(b.skip_false);
    expect(tok.batch_decode(b.ids, { skip_special_tokens: true })).toEqual(b.skip_true);
    const width = b.ids[0].length;
    const tensor = new Tensor("int32", Int32Array.from(b.ids.flat()), [b.ids.length, width]);
    expect(tok.batch_decode(tensor, { skip_special_tokens: true })).toEqual(b.skip_true);
    expect(tok.decode(tensor.slice(0, null))).toBe(b.skip_false[0]);
  });

  test("ids outside the vocabulary are skipped, as in the Rust tokenizer", () => {
    expect(tok.decode([300000])).toBe("");
    expect(tok.decode([])).toBe("");
  });
});

describe("errors", () => {
  test("misspelt options suggest the closest valid one", () => {
    expect(() => tok("x", { max_lenght: 4 } as never)).toThrow("tokenizer: unknown option 'max_lenght' (did you mean 'max_length'?)");
    expect(() => tok.decode([1], { skip_special_token: true } as never)).toThrow(/unknown option 'skip_special_token' \(did you mean 'skip_special_tokens'\?\)/);
    expect(() => tok.batch_decode([[1]], { skip_specials: true } as never)).toThrow(/did you mean 'skip_special_tokens'/);
    expect(() => tok.apply_chat_template([{ role: "user", content: "x" }], { add_generation_promt: true })).toThrow(
      /apply_chat_template: unknown option 'add_generation_promt' \(did you mean 'add_generation_prompt'\?\)/,
    );
    expect(() => tok("x", { return_tensor: "pt" } as never)).toThrow(/did you mean 'return_tensors'/);
    expect(() => checkOptions("f", { zzz: 1 }, ["alpha", "beta"])).toThrow("f: unknown option 'zzz' (valid options: alpha, beta)");
  });

  test("from_pretrained: unknown option, missing tokenizer.json", async () => {
    await expect(AutoTokenizer.from_pretrained(TOKENIZER_DIR, { padding_sid: "left" } as never)).rejects.toThrow(/did you mean 'padding_side'/);
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    try {
      writeFileSync(join(dir, "tokenizer_config.json"), "{}");
      await expect(AutoTokenizer.from_pretrained(dir)).rejects.toThrow(/tokenizer\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("from_pretrained options override tokenizer_config", async () => {
    const left = await AutoTokenizer.from_pretrained(TOKENIZER_DIR, { padding_side: "left" });
    expect(left.padding_side).toBe("left");
  });

  test("messages without role or content name the message", () => {
    expect(() => tok.apply_chat_template([{ role: "user", content: "a" }, { content: "b" } as never])).toThrow(/message 1 has no 'role'/);
    expect(() => tok.apply_chat_template([{ role: "system", content: "a" }, { role: "user" }])).toThrow(/message 1 \(role 'user'\) has no 'content'/);
    expect(() => tok.apply_chat_template([{ role: "user", content: [{ type: "text" }] }])).toThrow(/message 0 content part 0/);
    expect(() => tok.apply_chat_template([])).toThrow(/empty conversation/);
    expect(() => tok.apply_chat_template("hi" as never)).toThrow(/array of messages/);
    expect(() => tok.apply_chat_template([{ role: "user", content: "x" }], { add_generation_prompt: true, continue_final_message: true })).toThrow(
      /not compatible/,
    );
  });

  test("the template's raise_exception becomes an error", () => {
    expect(() => tok.apply_chat_template([{ role: "system", content: "only a system message" }], { tools: [{ type: "function" }], tokenize: false })).toThrow(
      /no first user message/,
    );
  });

  test("bad inputs", () => {
    expect(() => tok(42 as never)).toThrow(/text must be a string or an array of strings/);
    expect(() => tok(["a", 5] as never)).toThrow(/item 1 of the batch/);
    expect(() => tok("x", { return_tensors: "np" } as never)).toThrow(/return_tensors must be "pt"/);
    expect(() => tok("x", { padding: "longst" } as never)).toThrow(/padding must be/);
    expect(() => tok(["a", "b c d"], { return_tensors: "pt" })).toThrow(/different lengths.*padding: true/);
    expect(() => tok.decode([1.5])).toThrow(/non-negative integers/);
    expect(() => tok.decode([[1, 2]] as never)).toThrow(/non-negative integers/);
    expect(() => tok.batch_decode([1, 2] as never)).toThrow(/row 0/);
    expect(() => (tok.padding_side = "center" as never)).toThrow(/padding_side must be "left" or "right"/);
    expect(() => (tok.pad_token = "<|no_such_token|>")).toThrow(/not in the vocabulary/);
  });

  test("padding without a pad token", async () => {
    const t = await AutoTokenizer.from_pretrained(TOKENIZER_DIR);
    t.pad_token = null;
    expect(() => t(["a", "b c"], { padding: true })).toThrow(/no pad_token/);
    t.pad_token = t.eos_token;
    expect(t(["a", "b c"], { padding: true }).input_ids[0].at(-1)).toBe(200008);
  });
});

afterAll(() => {
  tok.padding_side = "right";
});
