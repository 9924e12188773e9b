// `node bench/long_context.mjs [--model DIR] [--lengths 1024,8192,32768,131072] [--chunk N] [--new-tokens N] [--threads N]
//                              [--precision highest|medium] [--kv-cache-dtype float32|bfloat16|int8] [--llama-cpp]`
// Long prompts: prefill tok/s, decode tok/s after the prompt, and peak RSS against the weights + KV cache, one fresh
// process per length (the embedded model by default). The prompt is prefilled in pieces of --chunk tokens
// (generate's prefill_chunk_size), so working memory stays bounded and only the KV cache grows with the length.
// With --llama-cpp, the MoE bench checkpoint (made by `npm run bench`) is timed against llama.cpp's
// `llama-bench -fa 1` at the same lengths (Scout's attention chunk of 8192 makes both compute the same function), with
// its q8_0 KV cache when ours is int8.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SDK_PATH } from "./sdk.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const llamaCpp = args.includes("--llama-cpp");
const model = flag("--model", llamaCpp ? join(HERE, ".cache", "moe-v1") : join(HERE, "..", "models", "llama4-tiny"));
const lengths = flag("--lengths", llamaCpp ? "8192,32768" : "1024,8192,32768,131072").split(",").map(Number);
const chunk = Number(flag("--chunk", 2048));
const newTokens = Number(flag("--new-tokens", 16));
const threads = Number(flag("--threads", availableParallelism()));
// "medium" + "bfloat16" compute what llama.cpp does with bf16 weights: bf16-rounded activations, a 16-bit KV cache.
const precision = flag("--precision", "highest");
const kvCacheDtype = flag("--kv-cache-dtype", "float32");

// One length in a fresh process: load, prefill in pieces through a cache, decode, report.
const PROBE = `
  const sdk = require(process.argv[1]);
  // VmHWM: this process's own peak (getrusage's maxRSS starts from the parent's, inherited through fork).
  const peakRss = () => 1024 * Number(/VmHWM:\\s*(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
  const [dir, length, chunk, newTokens, threads, precision, kv_cache_dtype] = process.argv.slice(2).map((v, i) => (i && i < 5 ? Number(v) : v));
  sdk.setNumThreads(threads);
  sdk.torch.set_float32_matmul_precision(precision);
  (async () => {
    const model = await sdk.Llama4ForCausalLM.from_pretrained(dir, { kv_cache_dtype });
    const V = model.text_config.vocab_size;
    const ids = Array.from({ length }, (_, i) => 3 + ((i * 7919) % (V - 3)));
    const cache = model.new_cache(1);
    let t = performance.now(), out;
    for (let p = 0; p < length; p += chunk)
      out = await model.forward({ input_ids: [ids.slice(p, p + chunk)], cache, logits_to_keep: 1 });
    const prefillS = (performance.now() - t) / 1000;
    t = performance.now();
    for (let i = 0; i < newTokens; i++) out = await model.forward({ input_ids: [[5 + i]], cache, logits_to_keep: 1 });
    const decodeS = (performance.now() - t) / 1000;
    const weights = model.weight_memory().reduce((s, m) => s + m.bytes, 0);
    const kv = cache.native.layerBytes().reduce((s, b) => s + b, 0);
    console.log(JSON.stringify({ length, prefill_s: prefillS, prefill_tok_s: length / prefillS, decode_tok_s: newTokens / decodeS,
      peak_rss_bytes: peakRss(), weight_bytes: weights, kv_cache_bytes: kv }));
  })().catch((e) => { console.error(e); process.exit(1); });`;

function ours(length) {
  const r = spawnSync(process.execPath, ["-e", PROBE, SDK_PATH, model, String(length), String(chunk), String(newTokens), String(threads), precision, kvCacheDtype],
    { encoding: "utf8", maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`llama4-ts at ${length} tokens failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}

function llama(length) {
  const bin = join(HERE, ".cache", "llama.cpp", "build", "bin", "llama-bench");
  const gguf = `${model}.bf16.gguf`;
  if (!existsSync(bin) || !existsSync(gguf)) throw new Error("--llama-cpp needs `npm run bench` to have built llama.cpp and the moe GGUF");
  // Its default cache is f16; against our int8 cache, its q8_0 one (blocks of 32 with an f16 scale: 8.5 bits).
  const cacheTypes = kvCacheDtype === "int8" ? ["-ctk", "q8_0", "-ctv", "q8_0"] : [];
  const bench = (extra) => {
    const r = spawnSync(bin, ["-m", gguf, "-t", String(threads), "-r", "1", "-fa", "1", "-o", "json", ...cacheTypes, ...extra], { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`llama-bench failed: ${r.stderr}`);
    return JSON.parse(r.stdout)[0].avg_ts;
  };
  return { length, prefill_tok_s: bench(["-p", String(length), "-n", "0", "-b", String(chunk), "-ub", String(Math.min(chunk, 512))]),
    decode_tok_s: bench(["-p", "0", "-n", String(newTokens), "-d", String(length)]) };
}

const rows = [];
for (const length of lengths) {
  const o = ours(length);
  const l = llamaCpp ? llama(length) : null;
  rows.push({ ours: o, llama: l });
  const gb = (b) => (b / 1e9).toFixed(2);
  console.log(`${length} tokens: prefill ${o.prefill_tok_s.toFixed(1)} tok/s (${o.prefill_s.toFixed(1)} s), decode ${o.decode_tok_s.toFixed(2)} tok/s, ` +
    `peak RSS ${gb(o.peak_rss_bytes)} GB (weights ${gb(o.weight_bytes)} + KV ${gb(o.kv_cache_bytes)} + ${gb(o.peak_rss_bytes - o.weight_bytes - o.kv_cache_bytes)})` +
    (l ? `; llama.cpp -fa 1: prefill ${l.prefill_tok_s.toFixed(1)} (${(o.prefill_tok_s / l.prefill_tok_s).toFixed(2)}x), decode ${l.decode_tok_s.toFixed(2)} (${(o.decode_tok_s / l.decode_tok_s).toFixed(2)}x)` : ""));
}
console.log(JSON.stringify({ model, chunk, threads, new_tokens: newTokens, precision, kv_cache_dtype: kvCacheDtype, rows }));
