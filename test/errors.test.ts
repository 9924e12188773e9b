// Bad input never crashes the process: each case is a rejected promise whose message names the
// file, tensor or argument at fault.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Llama4ForCausalLM } from "../sdk";
import { modelDir } from "./helpers/fixtures";
import { dropTensor, readRaw, writeRaw } from "./helpers/safetensors";

const SOURCE = modelDir("tiny-llama4-f32");
let scratch: string;
let counter = 0;

/** A fresh copy of the f32 fixture checkpoint, optionally broken by `edit`. */
function brokenCopy(edit: (dir: string) => void): string {
  const dir = join(scratch, `ckpt${counter++}`);
  mkdirSync(dir);
  for (const f of ["config.json", "generation_config.json", "model.safetensors"]) copyFileSync(join(SOURCE, f), join(dir, f));
  edit(dir);
  return dir;
}

function editHeader(dir: string, change: (h: ReturnType<typeof readRaw>["header"]) => void) {
  const path = join(dir, "model.safetensors");
  const raw = readRaw(path);
  change(raw.header);
  writeRaw(path, raw);
}

function editConfig(dir: string, change: (c: Record<string, unknown>) => void) {
  const path = join(dir, "config.json");
  const config = JSON.parse(readFileSync(path, "utf8"));
  change(config);
  writeFileSync(path, JSON.stringify(config));
}

const load = (dir: string) => Llama4ForCausalLM.from_pretrained(dir, { dtype: "float32" });

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "llama4-ts-errors-"));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("malformed checkpoints", () => {
  test("truncated file (data cut short)", async () => {
    const dir = brokenCopy((d) => truncateSync(join(d, "model.safetensors"), 500_000));
    await expect(load(dir)).rejects.toThrow(/model\.safetensors: tensor \S+: data_offsets \[\d+, \d+\] out of range/);
  });

  test("truncated file (shorter than the header length field)", async () => {
    const dir = brokenCopy((d) => truncateSync(join(d, "model.safetensors"), 5));
    await expect(load(dir)).rejects.toThrow(/model\.safetensors: truncated file: 5 bytes/);
  });

  test("header length beyond the end of the file", async () => {
    const dir = brokenCopy((d) => {
      const path = join(d, "model.safetensors");
      const buf = readFileSync(path);
      buf.writeBigUInt64LE(BigInt(buf.length + 10), 0);
      writeFileSync(path, buf);
    });
    await expect(load(dir)).rejects.toThrow(/model\.safetensors: header length \d+ goes beyond the end of the file/);
  });

  test("header that is not JSON", async () => {
    const dir = brokenCopy((d) => {
      const path = join(d, "model.safetensors");
      const buf = readFileSync(path);
      buf.write("#", 8);
      writeFileSync(path, buf);
    });
    await expect(load(dir)).rejects.toThrow(/model\.safetensors header: malformed JSON at byte 0/);
  });

  test("overlapping data offsets", async () => {
    const dir = brokenCopy((d) =>
      editHeader(d, (h) => {
        h["model.layers.2.self_attn.q_proj.weight"].data_offsets = [...h["model.layers.0.self_attn.q_proj.weight"].data_offsets];
      }),
    );
    await expect(load(dir)).rejects.toThrow(
      /overlapping data_offsets: tensors model\.layers\.(0|2)\.self_attn\.q_proj\.weight and model\.layers\.(0|2)\.self_attn\.q_proj\.weight/,
    );
  });

  test("data offsets out of range", async () => {
    const dir = brokenCopy((d) =>
      editHeader(d, (h) => {
        const e = h["model.norm.weight"];
        const len = e.data_offsets[1] - e.data_offsets[0];
        const end = readRaw(join(d, "model.safetensors")).data.length + 64;
        e.data_offsets = [end - len, end];
      }),
    );
    await expect(load(dir)).rejects.toThrow(/tensor model\.norm\.weight: data_offsets \[\d+, \d+\] out of range/);
  });

  test("byte length not matching shape x dtype", async () => {
    const dir = brokenCopy((d) => editHeader(d, (h) => (h["model.norm.weight"].shape = [65])));
    await expect(load(dir)).rejects.toThrow(/tensor model\.norm\.weight: byte length 256 does not match shape \[65\] x F32/);
  });

  test("unknown dtype", async () => {
    const dir = brokenCopy((d) => editHeader(d, (h) => (h["model.norm.weight"].dtype = "F12")));
    await expect(load(dir)).rejects.toThrow(/tensor model\.norm\.weight: unknown dtype "F12"/);
  });

  test("a dtype the model cannot compute with", async () => {
    const dir = brokenCopy((d) => editHeader(d, (h) => (h["model.norm.weight"].dtype = "I32")));
    await expect(load(dir)).rejects.toThrow(/tensor model\.norm\.weight has dtype I32; expected F32, BF16 or F16/);
  });

  test("missing tensor", async () => {
    const dir = brokenCopy((d) => {
      const path = join(d, "model.safetensors");
      const raw = readRaw(path);
      dropTensor(raw, "model.layers.1.self_attn.o_proj.weight");
      writeRaw(path, raw);
    });
    await expect(load(dir)).rejects.toThrow(/missing tensor model\.layers\.1\.self_attn\.o_proj\.weight/);
  });

  test("tensor shape not matching config.json", async () => {
    const dir = brokenCopy((d) => editConfig(d, (c) => (c.intermediate_size_mlp = 100)));
    await expect(load(dir)).rejects.toThrow(
      /tensor model\.layers\.0\.feed_forward\.gate_proj\.weight has shape \[96, 64\], expected \[100, 64\] from config\.json/,
    );
  });

  test("config.json missing a required key", async () => {
    const dir = brokenCopy((d) => editConfig(d, (c) => delete c.hidden_size));
    await expect(load(dir)).rejects.toThrow(/config\.json: missing required key "hidden_size"/);
  });

  test("config.json with an invalid value", async () => {
    const dir = brokenCopy((d) => editConfig(d, (c) => (c.num_experts_per_tok = 9)));
    await expect(load(dir)).rejects.toThrow(/config\.json: num_experts_per_tok \(9\) exceeds num_local_experts \(4\)/);
  });

  test("a directory without weights", async () => {
    const dir = brokenCopy((d) => rmSync(join(d, "model.safetensors")));
    await expect(load(dir)).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });

  test("an index that names a missing shard", async () => {
    const dir = brokenCopy((d) => {
      rmSync(join(d, "model.safetensors"));
      writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "model.norm.weight": "nope.safetensors" } }));
    });
    await expect(load(dir)).rejects.toThrow(/nope\.safetensors: cannot open/);
  });

  test("a path that is not a checkpoint", async () => {
    await expect(load(join(scratch, "does-not-exist"))).rejects.toThrow(/does-not-exist: not a local directory, nor a Hub model id/);
  });

  test("an unsupported dtype option", async () => {
    await expect(Llama4ForCausalLM.from_pretrained(SOURCE, { dtype: "int4" })).rejects.toThrow(/dtype int4 is not supported/);
  });
});

describe("bad forward inputs", () => {
  let model: Llama4ForCausalLM;
  beforeAll(async () => {
    model = await load(SOURCE);
  });

  test("token id >= vocab_size", async () => {
    await expect(model.forward({ input_ids: [[1, 512]] })).rejects.toThrow(/input_ids\[0\]\[1\] = 512 is out of range: vocab_size is 512/);
  });

  test("negative token id", async () => {
    await expect(model.forward({ input_ids: [[-1]] })).rejects.toThrow(/input_ids\[0\]\[0\] = -1 is out of range/);
    const cache = model.new_cache(1);
    await expect(model.forward({ input_ids: [[1]], cache, past_key_values: cache })).rejects.toThrow(/forward: pass cache or past_key_values \(its older name\), not both/);
  });

  test("empty input", async () => {
    await expect(model.forward({ input_ids: [[]] })).rejects.toThrow(/empty input/);
    await expect(model.forward({ input_ids: [] })).rejects.toThrow(/empty input/);
  });

  test("ragged rows", async () => {
    await expect(model.forward({ input_ids: [[1, 2], [3]] })).rejects.toThrow(/input_ids rows must all have the same length/);
  });

  test("non-integer ids", async () => {
    await expect(model.forward({ input_ids: [[1.5]] })).rejects.toThrow(/input_ids\[0\]\[0\] = 1.5 is not an integer/);
  });

  test("attention_mask of the wrong shape", async () => {
    await expect(model.forward({ input_ids: [[1, 2, 3]], attention_mask: [[1, 1]] })).rejects.toThrow(
      /attention_mask must be \[1, 3\]/,
    );
  });

  test("a cache made for another batch size", async () => {
    const first = await model.forward({ input_ids: [[5, 6]], use_cache: true });
    await expect(model.forward({ input_ids: [[1], [2]], past_key_values: first.past_key_values })).rejects.toThrow(
      /the cache holds 1 rows but input_ids has 2/,
    );
    // the failed call left the cache as it was
    expect(first.past_key_values!.get_seq_length()).toBe(2);
  });

  test("the model still works after all of the above", async () => {
    const out = await model.forward({ input_ids: [[1, 2, 3]] });
    expect(out.logits.dims).toEqual([1, 3, 512]);
  });
});
