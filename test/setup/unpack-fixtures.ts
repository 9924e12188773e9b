// vitest globalSetup: the real Llama 4 tokenizer.json (28 MB) is committed gzipped (4.5 MB);
// unpack it next to the other tokenizer files before the suites read it.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

export const TOKENIZER_DIR = join(__dirname, "..", "fixtures", "llama4-tokenizer");

export function unpackTokenizer(): void {
  const packed = join(TOKENIZER_DIR, "tokenizer.json.gz");
  const target = join(TOKENIZER_DIR, "tokenizer.json");
  if (existsSync(target) && statSync(target).mtimeMs >= statSync(packed).mtimeMs) return;
  writeFileSync(target, gunzipSync(readFileSync(packed)));
}

export default function setup(): void {
  unpackTokenizer();
}
