// vitest globalSetup: fixtures committed in a smaller form, made whole before the suites read them.
// - The real Llama 4 tokenizer.json (28 MB) is committed gzipped (4.5 MB).
// - tiny-llama4-instruct-fp8's first shard holds only the 202048-row embeddings and lm_head, which stay bf16 and
//   are byte-identical to tiny-llama4-instruct's (6.5 MB): it is cut out of that checkpoint here.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

import { readRaw, writeRaw } from "../helpers/safetensors";

export const TOKENIZER_DIR = join(__dirname, "..", "fixtures", "llama4-tokenizer");
const MODELS = join(__dirname, "..", "fixtures", "models");

export function unpackTokenizer(): void {
  const packed = join(TOKENIZER_DIR, "tokenizer.json.gz");
  const target = join(TOKENIZER_DIR, "tokenizer.json");
  if (existsSync(target) && statSync(target).mtimeMs >= statSync(packed).mtimeMs) return;
  writeFileSync(target, gunzipSync(readFileSync(packed)));
}

export function buildFp8InstructShard(): void {
  const target = join(MODELS, "tiny-llama4-instruct-fp8", "model-00001-of-00002.safetensors");
  const source = join(MODELS, "tiny-llama4-instruct", "model.safetensors");
  if (existsSync(target) && statSync(target).mtimeMs >= statSync(source).mtimeMs) return;
  const { header, data } = readRaw(source);
  const names = ["language_model.model.embed_tokens.weight", "language_model.lm_head.weight"].filter((n) => header[n]);
  let offset = 0;
  const parts: Buffer[] = [];
  const out: typeof header = {};
  for (const name of names) {
    const [begin, end] = header[name].data_offsets;
    parts.push(data.subarray(begin, end));
    out[name] = { ...header[name], data_offsets: [offset, offset + end - begin] };
    offset += end - begin;
  }
  writeRaw(target, { header: out, data: Buffer.concat(parts) });
}

export default function setup(): void {
  unpackTokenizer();
  buildFp8InstructShard();
}
