// `npm run bench`: llama4-ts vs llama.cpp (and optionally transformers) on the same random Llama 4 checkpoints,
// same thread count, same run. See bench/README.md for what each number means.
//
// Needs python3 with torch + transformers (to write the checkpoints and convert them to GGUF), cmake and a C/C++
// compiler (llama.cpp and the bandwidth probe are built once into bench/.cache).
// Flags: --threads N (default: all cores), --shape large-vocab|moe|all (all), --repeats N (3),
//        --prompt-tokens N (512), --new-tokens N (64), --torch (add transformers bf16/f32 rows),
//        --check-f32 (also run llama.cpp on an f32 GGUF, converted once: its greedy tokens and its prefill, the f32
//        arithmetic llama4-ts does by default), --pairs N (decode pairs per format, 9; 0: none),
//        --isa native|avx2 (native: every instruction set the CPU has; avx2: llama4-ts's AVX2 kernels against a
//        llama.cpp built without AVX-512, what both run on a CPU that only has AVX2).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadSdk, SDK_PATH } from "./sdk.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const CACHE = join(HERE, ".cache");
const LLAMA_CPP_VERSION = "0.3.36"; // llama-cpp-python sdist that vendors the baseline (bench/setup_llama_cpp.sh)
const LLAMA_CPP_SRC = join(CACHE, "llama.cpp", `llama_cpp_python-${LLAMA_CPP_VERSION}`);
const LLAMA_CPP_TREE = join(LLAMA_CPP_SRC, "vendor", "llama.cpp");
// Per instruction-set choice (--isa): llama.cpp's build directory and llama4-ts's kernel set (LLAMA4_TS_KERNELS).
const ISAS = { native: { build: "build", kernels: null }, avx2: { build: "build-avx2", kernels: "avx2" } };
const llamaCppBin = (isa) => join(CACHE, "llama.cpp", ISAS[isa].build, "bin");
// llama-quantize's files do not depend on the build: the native one makes them for every --isa.
const LLAMA_QUANTIZE = join(llamaCppBin("native"), "llama-quantize");
const BANDWIDTH_BIN = join(CACHE, "bandwidth");
// Bump the suffix when make_scout_like.py changes, so a stale cached checkpoint is not reused.
const CHECKPOINT_VERSION = "v1";
const SHAPES = ["large-vocab", "moe"];
// Short text prompt for the greedy cross-check against llama.cpp (llama-simple takes text, not ids).
const CHECK_PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time";
const CHECK_TOKENS = 32;

// Weight formats compared: bf16 (ours in f32 and "medium" math), q8 (ours against llama.cpp's Q8_0), q4 (ours
// against Q4_0, with Q4_K_M reported) and fp8 (ours with FbgemmFp8Config, against Q8_0: same bytes per weight). The
// quantized GGUFs are made from the bf16 one by llama-quantize.
const WEIGHTS = ["bf16", "q8", "q4", "fp8"];
const LLAMA_QUANT = { q8: ["Q8_0"], q4: ["Q4_0", "Q4_K_M"], fp8: [] };  // llama.cpp has no FP8 type: fp8 is set against Q8_0

const USAGE =
  "usage: node bench/run.mjs [--threads N] [--shape large-vocab|moe|all] [--weights bf16,q8,q4,fp8] [--repeats N] [--rounds N] " +
  "[--prompt-tokens N] [--new-tokens N] [--torch] [--check-f32] [--pairs N] [--isa native|avx2]";

function parseArgs(argv) {
  const opts = { threads: availableParallelism(), shapes: SHAPES, weights: WEIGHTS, repeats: 3, rounds: 3, promptTokens: 512, newTokens: 64, torch: false, checkF32: false, pairs: 9, isa: "native" };
  const numeric = { "--threads": "threads", "--prompt-tokens": "promptTokens", "--new-tokens": "newTokens", "--repeats": "repeats", "--rounds": "rounds", "--pairs": "pairs" };
  const fail = (arg) => {
    console.error(`${USAGE} (bad: ${arg})`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.split("=", 2);
    if (flag === "--torch" && inline === undefined) {
      opts.torch = true;
    } else if (flag === "--check-f32" && inline === undefined) {
      opts.checkF32 = true;
    } else if (flag === "--isa") {
      const value = inline ?? argv[++i];
      if (!ISAS[value]) fail(arg);
      opts.isa = value;
    } else if (flag === "--shape") {
      const value = inline ?? argv[++i];
      if (value === "all") opts.shapes = SHAPES;
      else if (SHAPES.includes(value)) opts.shapes = [value];
      else fail(arg);
    } else if (flag === "--weights") {
      const value = (inline ?? argv[++i] ?? "").split(",");
      if (!value.length || !value.every((w) => WEIGHTS.includes(w))) fail(arg);
      opts.weights = WEIGHTS.filter((w) => value.includes(w));
    } else if (numeric[flag]) {
      const value = Number(inline ?? argv[++i]);
      if (!Number.isInteger(value) || value < (flag === "--pairs" ? 0 : 1)) fail(arg);
      opts[numeric[flag]] = value;
    } else {
      fail(arg);
    }
  }
  return opts;
}

function run(cmd, args, what, { inherit = false } = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, stdio: inherit ? "inherit" : "pipe" });
  if (r.status !== 0) {
    if (!inherit) process.stderr.write(r.stderr ?? "");
    throw new Error(`${what} failed (${cmd} ${args.join(" ")}): ${r.error?.message ?? `exit ${r.status}`}`);
  }
  return r.stdout;
}

// Writes to a temp path and renames, so an interrupted run never leaves a half-written artifact behind.
function buildOnce(path, what, write) {
  if (existsSync(path)) return;
  console.log(`${what} (once)...`);
  const tmp = `${path}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(CACHE, { recursive: true });
  write(tmp);
  renameSync(tmp, path);
}

function ensureLlamaCpp(isa) {
  for (const build of new Set(["native", isa])) {
    const bins = ["llama-bench", "llama-simple", "llama-quantize"].map((b) => join(llamaCppBin(build), b));
    if (bins.every(existsSync)) continue;
    console.log(`building the llama.cpp baseline (${build}; once, takes a while)...`);
    run("bash", [join(HERE, "setup_llama_cpp.sh"), build], "building llama.cpp", { inherit: true });
  }
}

function ensureBandwidthProbe() {
  const src = join(HERE, "bandwidth.c");
  if (existsSync(BANDWIDTH_BIN) && statSync(BANDWIDTH_BIN).mtimeMs > statSync(src).mtimeMs) return;
  mkdirSync(CACHE, { recursive: true });
  run("cc", ["-O3", "-march=native", "-pthread", "-o", BANDWIDTH_BIN, src], "compiling the bandwidth probe");
}

function measureBandwidth(threads, mib = 2048, passes = 20) {
  return JSON.parse(run(BANDWIDTH_BIN, [String(threads), String(mib), String(passes)], "bandwidth probe").trim());
}

function ensureShape(shape, opts) {
  const dir = join(CACHE, `${shape}-${CHECKPOINT_VERSION}`);
  buildOnce(dir, `writing the ${shape} checkpoint`, (tmp) =>
    console.log(run("python3", [join(HERE, "make_scout_like.py"), "--shape", shape, tmp], "writing the checkpoint").trim()));
  const gguf = (type) => {
    const path = `${dir}.${type}.gguf`;
    buildOnce(path, `converting the ${shape} checkpoint to a ${type} GGUF`, (tmp) =>
      run("python3", [join(HERE, "convert_to_gguf.py"), LLAMA_CPP_TREE, dir, tmp, type], "GGUF conversion"));
    return path;
  };
  const bf16 = gguf("bf16");
  const quantized = {};
  for (const type of opts.weights.flatMap((w) => LLAMA_QUANT[w] ?? [])) {
    quantized[type] = `${dir}.${type}.gguf`;
    buildOnce(quantized[type], `quantizing the ${shape} GGUF to ${type}`, (tmp) =>
      run(LLAMA_QUANTIZE, [bf16, tmp, type], "llama-quantize"));
  }
  return { dir, gguf: bf16, quantized, ggufF32: opts.checkF32 ? gguf("f32") : null };
}

// Greedy continuation of CHECK_PROMPT by llama-simple, compared with ours by decoded text prefix.
function llamaGreedySame(gguf, ours, opts) {
  const text = run(join(llamaCppBin(opts.isa), "llama-simple"), ["-m", gguf, "-n", String(CHECK_TOKENS), CHECK_PROMPT], "llama-simple");
  let same = 0;
  // A prefix that ends inside a multi-byte character decodes to U+FFFD; compare without it.
  while (same < ours.check.tokens.length && text.startsWith(ours.check.texts[same + 1].replace(/\uFFFD+$/, ""))) same++;
  return { text, same_tokens: same, of: ours.check.tokens.length };
}

// Parameters read from memory to decode one token, from the config: every matrix a token passes through
// (attention, router, shared expert, its top-k routed experts, norms, lm_head) plus its embedding row.
function paramsPerToken(c) {
  const h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const attention = h * q + 2 * h * kv + q * h;
  const moeLayers = new Set(c.moe_layers);
  const parts = { attention: 0, router: 0, shared_expert: 0, routed_experts: 0, dense_mlp: 0, norms: h, lm_head: h * c.vocab_size, embedding_row: h };
  let allExperts = 0;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    parts.attention += attention;
    parts.norms += 2 * h;
    if (moeLayers.has(l)) {
      parts.router += h * c.num_local_experts;
      parts.shared_expert += 3 * h * c.intermediate_size;
      parts.routed_experts += c.num_experts_per_tok * 3 * h * c.intermediate_size;
      allExperts += c.num_local_experts * 3 * h * c.intermediate_size;
    } else {
      parts.dense_mlp += 3 * h * c.intermediate_size_mlp;
    }
  }
  const perToken = Object.values(parts).reduce((a, b) => a + b, 0);
  // Everything stored: the whole embedding table and all routed experts instead of one row and top-k.
  const total = perToken - parts.embedding_row + h * c.vocab_size - parts.routed_experts + allExperts;
  return { parts, perToken, allExperts, total };
}

// Bytes one decode step reads in a weight format, from paramsPerToken's parts. Linear layers take the format's
// bits (q8 / Q8_0: 34 bytes per 32 weights; q4 / Q4_0: 18); lm_head stays at 8 bits in our q4 and at Q6_K in
// llama.cpp's Q4_0; router, norms and the embedding row stay bf16 (llama.cpp keeps them f32 / quantized, a
// rounding error here). Q4_K_M mixes Q4_K and Q6_K: 4.85 bits on average.
function bytesPerToken(parts, weights) {
  const linear = parts.attention + parts.shared_expert + parts.routed_experts + parts.dense_mlp;
  const rest = 2 * (parts.router + parts.norms + parts.embedding_row);
  // fp8 (FbgemmFp8Config): 1 byte per weight plus a 4-byte scale per row (counted as nothing here); lm_head stays bf16.
  const perWeight = { bf16: 2, q8: 34 / 32, Q8_0: 34 / 32, q4: 18 / 32, Q4_0: 18 / 32, Q4_K_M: 4.85 / 8, fp8: 1 }[weights];
  const head = { bf16: 2, q8: 34 / 32, Q8_0: 34 / 32, q4: 34 / 32, Q4_0: 210 / 256, Q4_K_M: 210 / 256, fp8: 2 }[weights];
  return linear * perWeight + parts.lm_head * head + rest;
}

// Deterministic prompt (mulberry32), so every engine and every run sees the same ids.
function promptIds(n, vocab, seed = 42) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, () => Math.floor(next() * vocab));
}

function argmaxLast(logits) {
  const data = logits.data;
  let best = 0;
  for (let i = 1; i < data.length; i++) if (data[i] > data[best]) best = i;
  return best;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function greedy(model, ids, n, eos = new Set()) {
  let out = await model.forward({ input_ids: [ids], use_cache: true, logits_to_keep: 1 });
  const tokens = [];
  for (let i = 0; i < n; i++) {
    const tok = argmaxLast(out.logits);
    if (eos.has(tok)) break;
    tokens.push(tok);
    if (i + 1 < n) out = await model.forward({ input_ids: [[tok]], past_key_values: out.past_key_values, logits_to_keep: 1 });
  }
  return tokens;
}

// precision: torch.set_float32_matmul_precision's "highest" (f32 math on the bf16 weights) or "medium"
// (activations rounded to bf16 for products with bf16 weights, as llama.cpp computes them). dtype: "auto" (the
// checkpoint's bf16) or "q8" / "q4" (quantized at load).
async function benchOurs(sdk, dir, config, ids, opts, precision, dtype = "auto") {
  sdk.torch.set_float32_matmul_precision(precision);
  const t0 = performance.now();
  const model = await sdk.Llama4ForCausalLM.from_pretrained(dir, dtype === "fp8"
    ? { quantization_config: new sdk.FbgemmFp8Config() } : { dtype });
  const loadS = (performance.now() - t0) / 1000;
  const once = async () => {
    let t = performance.now();
    let out = await model.forward({ input_ids: [ids], use_cache: true, logits_to_keep: 1 });
    const prefillS = (performance.now() - t) / 1000;
    const tokens = [];
    t = performance.now();
    for (let i = 0; i < opts.newTokens; i++) {
      const tok = argmaxLast(out.logits);
      tokens.push(tok);
      out = await model.forward({ input_ids: [[tok]], past_key_values: out.past_key_values, logits_to_keep: 1 });
    }
    return { prefillS, decodeS: (performance.now() - t) / 1000, tokens };
  };
  await once(); // warm-up: page in the mapped weights, size the scratch buffers
  const runs = [];
  for (let i = 0; i < opts.repeats; i++) runs.push(await once());

  // Greedy continuation of a short text prompt, compared with llama.cpp's below.
  const tokenizer = await sdk.AutoTokenizer.from_pretrained(dir);
  const checkIds = tokenizer.encode(CHECK_PROMPT);
  const eos = new Set([config.eos_token_id].flat());
  const checkTokens = await greedy(model, checkIds, CHECK_TOKENS, eos);
  // Text after each generated token: llama-simple prints text, so the comparison is on decoded prefixes.
  const checkTexts = [];
  for (let k = 0; k <= checkTokens.length; k++) {
    checkTexts.push(tokenizer.decode([...checkIds, ...checkTokens.slice(0, k)], { skip_special_tokens: false }));
  }

  const prefill = runs.map((r) => ids.length / r.prefillS);
  const decode = runs.map((r) => opts.newTokens / r.decodeS);
  return {
    name: dtype === "fp8" ? "llama4-ts (fp8: FbgemmFp8Config)" : dtype !== "auto" ? `llama4-ts (${dtype}: weights quantized at load)`
      : precision === "highest" ? "llama4-ts (bf16 weights, f32 math)" : "llama4-ts (bf16 weights and activations: matmul precision medium)",
    weights: dtype === "auto" ? "bf16" : dtype,
    matmul_precision: precision,
    threads: sdk.getNumThreads(),
    load_s: loadS,
    prefill_tok_s: median(prefill),
    decode_tok_s: median(decode),
    prefill_runs: prefill,
    decode_runs: decode,
    tokens: runs.at(-1).tokens,
    check: { prompt: CHECK_PROMPT, prompt_ids: checkIds, tokens: checkTokens, texts: checkTexts },
  };
}

// Peak RSS of one engine alone, in a fresh process: load with `weights`, a prefill of the prompt, the decode steps.
// Against what it must hold: the weights as loaded (weight_memory) and the KV cache at the end.
const MEMORY_PROBE = `
  const sdk = require(process.argv[1]);
  // VmHWM: this process's own peak (getrusage's maxRSS starts from the parent's, inherited through fork).
  const peakRss = () => 1024 * Number(/VmHWM:\\s*(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
  const [dir, weights, threads, idsJson, newTokens] = process.argv.slice(2);
  sdk.setNumThreads(Number(threads));
  (async () => {
    const options = weights === "fp8" ? { quantization_config: new sdk.FbgemmFp8Config() } : { dtype: weights === "bf16" ? "auto" : weights };
    const model = await sdk.Llama4ForCausalLM.from_pretrained(dir, options);
    let out = await model.forward({ input_ids: [JSON.parse(idsJson)], use_cache: true, logits_to_keep: 1 });
    for (let i = 0; i < Number(newTokens); i++) out = await model.forward({ input_ids: [[1]], past_key_values: out.past_key_values, logits_to_keep: 1 });
    const weightBytes = model.weight_memory().reduce((s, m) => s + m.bytes, 0);
    const kvBytes = out.past_key_values.native.layerBytes().reduce((s, b) => s + b, 0);
    console.log(JSON.stringify({ peak_rss_bytes: peakRss(), weight_bytes: weightBytes, kv_cache_bytes: kvBytes }));
  })().catch((e) => { console.error(e); process.exit(1); });`;

function measureMemory(dir, weights, ids, opts) {
  const out = run(process.execPath, ["-e", MEMORY_PROBE, SDK_PATH, dir, weights, String(opts.threads), JSON.stringify(ids), String(opts.newTokens)], `memory probe (${weights})`);
  const m = JSON.parse(out.trim().split("\n").at(-1));
  return { ...m, ratio: m.peak_rss_bytes / (m.weight_bytes + m.kv_cache_bytes) };
}

function llamaBench(gguf, args, opts) {
  const out = run(join(llamaCppBin(opts.isa), "llama-bench"),
    ["-m", gguf, "-t", String(opts.threads), "-r", String(opts.repeats), "-o", "json", ...args], "llama-bench");
  const rows = JSON.parse(out);
  if (rows.length !== 1) throw new Error(`llama-bench returned ${rows.length} results, expected 1`);
  return rows[0];
}

// One engine's rounds as one result: the first round's details, every round's samples, their medians, and per
// round the decode median with the bandwidth probed beside that turn.
function pooled(results) {
  const prefill = results.flatMap((r) => r.prefill_runs), decode = results.flatMap((r) => r.decode_runs);
  if (!decode.length) return { ...results[0], prefill_tok_s: median(prefill), prefill_runs: prefill };
  const turns = results.map((r) => ({ decode_tok_s: median(r.decode_runs), bandwidth_beside_gb_s: r.bandwidth_beside_gb_s }));
  return { ...results[0], prefill_tok_s: median(prefill), decode_tok_s: median(decode), prefill_runs: prefill, decode_runs: decode, turns };
}

// prefillOnly: the f32 GGUF, whose decode reads twice the bytes of every other row's and is not compared.
function benchLlamaCpp(gguf, ours, opts, check = true, type = "bf16", prefillOnly = false) {
  // Prefill: pp<P> on an empty cache. Decode: tg<N> after a <P>-token context (-d), the same positions
  // llama4-ts decodes at. llama-bench runs its own warm-up before the timed repetitions.
  const pp = llamaBench(gguf, ["-p", String(opts.promptTokens), "-n", "0"], opts);
  const tg = prefillOnly ? null : llamaBench(gguf, ["-p", "0", "-n", String(opts.newTokens), "-d", String(opts.promptTokens)], opts);
  return {
    name: `llama.cpp (${type})`,
    weights: type,
    gguf,
    threads: pp.n_threads,
    build: `${pp.build_commit} (build ${pp.build_number})`,
    settings: { type_k: pp.type_k, type_v: pp.type_v, flash_attn: { "-1": "auto", 0: "off", 1: "on" }[pp.flash_attn] ?? pp.flash_attn,
      n_batch: pp.n_batch, n_ubatch: pp.n_ubatch },
    prefill_tok_s: median(pp.samples_ts),
    decode_tok_s: tg ? median(tg.samples_ts) : null,
    prefill_runs: pp.samples_ts,
    decode_runs: tg ? tg.samples_ts : [],
    llama_bench: { pp, tg },
    // llama-simple echoes the prompt (with <|begin_of_text|>) and prints the continuation.
    check: check ? llamaGreedySame(gguf, ours, opts) : null,
  };
}

// Decode in pairs: a llama4-ts decode and a llama.cpp decode back to back, a few seconds apart (which goes first
// alternates), opts.pairs times, and the ratio within each pair. The host's memory bandwidth changes from minute to
// minute; the two halves of a pair share their minute, so the median of the pairs' ratios does not depend on which
// phase each engine's turn fell in, as the ratio of the pooled medians does.
async function decodePairs(sdk, dir, ids, opts, dtype, gguf) {
  const model = await sdk.Llama4ForCausalLM.from_pretrained(dir, dtype === "fp8"
    ? { quantization_config: new sdk.FbgemmFp8Config() } : { dtype });
  const ours = async () => {
    let out = await model.forward({ input_ids: [ids], use_cache: true, logits_to_keep: 1 });
    const t = performance.now();
    for (let i = 0; i < opts.newTokens; i++) {
      out = await model.forward({ input_ids: [[argmaxLast(out.logits)]], past_key_values: out.past_key_values, logits_to_keep: 1 });
    }
    return opts.newTokens / ((performance.now() - t) / 1000);
  };
  // One timed tg<N> after a <P>-token context, after llama-bench's own warm-up.
  const theirs = () => llamaBench(gguf, ["-p", "0", "-n", String(opts.newTokens), "-d", String(opts.promptTokens)],
    { ...opts, repeats: 1 }).samples_ts[0];
  await ours();  // warm-up
  const pairs = [];
  for (let i = 0; i < opts.pairs; i++) {
    const first = i % 2 === 0 ? await ours() : theirs();
    const second = i % 2 === 0 ? theirs() : await ours();
    const [oursTokS, llamaTokS] = i % 2 === 0 ? [first, second] : [second, first];
    pairs.push({ ours_tok_s: oursTokS, llama_cpp_tok_s: llamaTokS, ratio: oursTokS / llamaTokS });
  }
  const ratios = pairs.map((p) => p.ratio);
  return { pairs, median_ratio: median(ratios), min_ratio: Math.min(...ratios), max_ratio: Math.max(...ratios) };
}

function benchTorch(dir, dtype, idsPath, opts) {
  const out = run("python3",
    [join(HERE, "torch_bench.py"), dir, idsPath, "--dtype", dtype, "--threads", String(opts.threads),
      "--new-tokens", String(opts.newTokens), "--repeats", String(opts.repeats)],
    `torch ${dtype} benchmark`);
  return JSON.parse(out.trim().split("\n").at(-1));
}

function sameTokens(a, b) {
  let n = 0;
  while (n < a.length && a[n] === b[n]) n++;
  return n;
}

function markdownTable(rows, leftColumns = 1) {
  const widths = rows[0].map((_, j) => Math.max(3, ...rows.map((row) => row[j].length)));
  const line = (row) => `| ${row.map((cell, j) => (j < leftColumns ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join(" | ")} |`;
  const rule = `| ${widths.map((w, j) => (j < leftColumns ? "-".repeat(w) : `${"-".repeat(w - 1)}:`)).join(" | ")} |`;
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join("\n");
}

const gb = (bytes) => `${(bytes / 1e9).toFixed(2)} GB`;
const dirBytes = (dir) => readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  ensureLlamaCpp(opts.isa);
  // Before the SDK loads: the engine reads its kernel set choice once.
  if (ISAS[opts.isa].kernels) process.env.LLAMA4_TS_KERNELS = ISAS[opts.isa].kernels;
  ensureBandwidthProbe();
  const paths = Object.fromEntries(opts.shapes.map((s) => [s, ensureShape(s, opts)]));

  const sdk = loadSdk();
  sdk.setNumThreads(opts.threads);
  // Other work on the machine skews every number below; say so rather than report it silently.
  const loadAtStart = loadavg()[0];
  if (loadAtStart > 0.5) console.warn(`warning: load average ${loadAtStart.toFixed(2)} before the run; the machine is not idle`);
  // Probed alone, before the first shape and after each (the engines run alone too). The roofline uses the
  // best pass: other work on the machine or the host can slow a pass but never speed it up.
  const probes = [measureBandwidth(opts.threads)];

  const shapes = [];
  for (const shape of opts.shapes) {
    const { dir } = paths[shape];
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    const ids = promptIds(opts.promptTokens, config.vocab_size);
    const idsPath = join(CACHE, "prompt-ids.json");
    writeFileSync(idsPath, JSON.stringify(ids));

    // Every engine x weight format, as [key, run]; each llama4-ts row is compared with the llama.cpp row of the same bits.
    const entries = [];
    if (opts.weights.includes("bf16")) {
      entries.push(["ours", (round) => benchOurs(sdk, dir, config, ids, opts, "highest")]);
      entries.push(["oursMedium", (round) => benchOurs(sdk, dir, config, ids, opts, "medium")]);
      entries.push(["llama", (round, rounds) => benchLlamaCpp(paths[shape].gguf, rounds.ours[0], opts, round === 0)]);
      if (opts.checkF32) entries.push(["llama_f32", () => benchLlamaCpp(paths[shape].ggufF32, null, opts, false, "f32", true)]);
    }
    for (const bits of opts.weights.filter((w) => w !== "bf16")) {
      entries.push([`ours_${bits}`, (round) => benchOurs(sdk, dir, config, ids, opts, "highest", bits)]);
      if (bits === "fp8" && !opts.weights.includes("q8")) entries.push(["llama_Q8_0", () => benchLlamaCpp(paths[shape].quantized.Q8_0, null, opts, false, "Q8_0")]);
      for (const type of LLAMA_QUANT[bits]) entries.push([`llama_${type}`, () => benchLlamaCpp(paths[shape].quantized[type], null, opts, false, type)]);
    }
    console.log(`${shape}: timing ${entries.map(([key]) => key).join(", ")} (${opts.threads} threads)...`);
    // One engine at a time, so they never compete for cores, taking turns for several rounds: the host's
    // memory bandwidth drifts from minute to minute, and taking turns gives every engine the same mix of it.
    // A short probe between turns sets each turn's decode against the bandwidth of that minute (the mean of the
    // probes just before and after it): the probes around the shape can both fall in another phase of the host.
    const rounds = Object.fromEntries(entries.map(([key]) => [key, []]));
    let before = measureBandwidth(opts.threads, 1024, 5);
    for (let round = 0; round < opts.rounds; round++) {
      for (const [key, bench] of entries) {
        const turn = await bench(round, rounds);
        sdk.torch.set_float32_matmul_precision("highest");
        const after = measureBandwidth(opts.threads, 1024, 5);
        turn.bandwidth_beside_gb_s = (before.median_gb_s + after.median_gb_s) / 2;
        before = after;
        rounds[key].push(turn);
      }
    }
    const pooledRows = entries.map(([key]) => pooled(rounds[key]));
    const baselineOf = (r) => pooledRows.find((b) => b.name.startsWith("llama.cpp") &&
      (b.weights === r.weights || (["q8", "fp8"].includes(r.weights) && b.weights === "Q8_0") || (r.weights === "q4" && b.weights === "Q4_0")));
    for (const r of pooledRows) if (!r.name.startsWith("llama.cpp")) r.baseline = baselineOf(r)?.name ?? null;
    // "medium" decodes on the same kernels as "highest": one set of pairs per weight format.
    for (const r of pooledRows.filter((x) => x.baseline && x.matmul_precision === "highest" && opts.pairs > 0)) {
      const base = pooledRows.find((b) => b.name === r.baseline);
      console.log(`${shape}: ${opts.pairs} decode pairs, llama4-ts ${r.weights} and ${base.name}...`);
      r.decode_pairs = await decodePairs(sdk, dir, ids, opts, r.weights === "bf16" ? "auto" : r.weights, base.gguf);
    }
    const torchRuns = opts.torch ? ["bfloat16", "float32"].map((d) => benchTorch(dir, d, idsPath, opts)) : [];
    const memory = {};  // per weight format, once
    for (const r of pooledRows)
      if (!r.name.startsWith("llama.cpp")) r.memory = memory[r.weights] ??= measureMemory(dir, r.weights, ids, opts);

    const { parts, perToken, allExperts, total: nParams } = paramsPerToken(config);
    const bytesPerToken = 2 * perToken; // bf16

    shapes.push({
      shape,
      checkpoint: { hf_bytes: dirBytes(dir), gguf_bytes: statSync(paths[shape].gguf).size, n_params: nParams },
      config: {
        vocab_size: config.vocab_size, hidden_size: config.hidden_size, num_hidden_layers: config.num_hidden_layers,
        num_attention_heads: config.num_attention_heads, num_key_value_heads: config.num_key_value_heads,
        head_dim: config.head_dim, intermediate_size: config.intermediate_size, num_local_experts: config.num_local_experts,
        num_experts_per_tok: config.num_experts_per_tok, moe_layers: config.moe_layers,
        nope_layers: config.no_rope_layers.map((use, i) => (use ? null : i)).filter((i) => i !== null),
        rope_parameters: config.rope_parameters, attention_chunk_size: config.attention_chunk_size,
      },
      per_token: {
        params: perToken, bytes_bf16: bytesPerToken, params_by_part: parts,
        experts_share_of_weights: allExperts / nParams, lm_head_share_of_bytes: parts.lm_head / perToken,
      },
      results: [...pooledRows, ...torchRuns],
    });
    probes.push(measureBandwidth(opts.threads));
  }
  const bandwidth = {
    threads: opts.threads, buffer_mib: probes[0].buffer_mib, passes: probes.length * probes[0].passes,
    best_gb_s: Math.max(...probes.map((p) => p.best_gb_s)), median_gb_s: median(probes.map((p) => p.median_gb_s)), probes,
  };
  // Two rooflines: at the best probe pass (what the memory can do) and at the median one (what it usually
  // did during the run; the host's memory bandwidth changes from minute to minute).
  for (const s of shapes) {
    s.per_token.roofline_decode_tok_s = (bandwidth.best_gb_s * 1e9) / s.per_token.bytes_bf16;
    s.per_token.roofline_median_decode_tok_s = (bandwidth.median_gb_s * 1e9) / s.per_token.bytes_bf16;
    for (const r of s.results.filter((x) => x.decode_tok_s)) {
      r.bytes_per_token = bytesPerToken(s.per_token.params_by_part, r.weights ?? "bf16");
      r.decode_roofline_fraction = (r.decode_tok_s * r.bytes_per_token) / (bandwidth.best_gb_s * 1e9);
      r.decode_median_roofline_fraction = (r.decode_tok_s * r.bytes_per_token) / (bandwidth.median_gb_s * 1e9);
      if (r.turns) {  // medians over turns of each turn's decode against the bandwidth beside it
        r.decode_beside_roofline_fraction = median(r.turns.map((t) => (t.decode_tok_s * r.bytes_per_token) / (t.bandwidth_beside_gb_s * 1e9)));
        r.decode_tok_s_per_gb_s = median(r.turns.map((t) => t.decode_tok_s / t.bandwidth_beside_gb_s));
      }
    }
  }

  // After all timings: loading an f32 GGUF doubles the page cache footprint and could evict the bf16 weights.
  for (const s of shapes) {
    const llama = s.results.find((r) => r.name === "llama.cpp (bf16)");
    if (paths[s.shape].ggufF32 && llama) llama.check_f32 = llamaGreedySame(paths[s.shape].ggufF32, s.results[0], opts);
  }

  const result = {
    date: new Date().toISOString(),
    threads: opts.threads,
    cpu: cpus()[0]?.model ?? "unknown",
    node: process.version,
    isa: opts.isa,
    llama4_ts_simd: sdk.simdKernels(),
    llama_cpp: (({ build, settings }) => ({ build, llama_cpp_python_sdist: LLAMA_CPP_VERSION, ...settings }))(shapes[0].results.find((r) => r.name.startsWith("llama.cpp"))),
    torch: (({ torch, transformers } = {}) => (torch ? { torch, transformers } : null))(shapes[0].results.find((r) => r.torch)),
    bandwidth,
    load_average: { start: loadAtStart, end: loadavg()[0] },
    prompt_tokens: opts.promptTokens,
    new_tokens: opts.newTokens,
    repeats: opts.repeats,
    shapes,
  };

  console.log();
  console.log(`machine     ${result.cpu}, ${opts.threads} threads, streaming read ${bandwidth.best_gb_s.toFixed(1)} GB/s ` +
    `(best of ${bandwidth.passes} passes over ${bandwidth.buffer_mib} MiB around the engines; ` +
    `medians ${probes.map((p) => p.median_gb_s.toFixed(1)).join(", ")})`);
  console.log(`engines     llama4-ts SIMD ${result.llama4_ts_simd}, node ${result.node}; llama.cpp ${result.llama_cpp.build} ` +
    `(${opts.isa === "native" ? "GGML_NATIVE=ON" : "GGML_NATIVE=OFF: AVX2, no AVX-512"}, KV ${result.llama_cpp.type_k}/${result.llama_cpp.type_v}, flash_attn ${result.llama_cpp.flash_attn})` +
    (result.torch ? `; torch ${result.torch.torch}, transformers ${result.torch.transformers}` : ""));
  console.log(`workload    ${opts.promptTokens}-token prefill; ${opts.newTokens} greedy decode steps after it; median of ` +
    `${opts.rounds} rounds x ${opts.repeats} runs (engines taking turns), each round after a warm-up`);
  for (const s of shapes) {
    const c = s.config;
    console.log();
    console.log(`### ${s.shape}: ${(s.checkpoint.n_params / 1e9).toFixed(2)}B parameters (${gb(s.checkpoint.gguf_bytes)} GGUF bf16), ` +
      `vocab ${c.vocab_size}, hidden ${c.hidden_size}, ${c.num_hidden_layers} layers, ${c.num_local_experts} experts ` +
      `top-${c.num_experts_per_tok} + shared (ffn ${c.intermediate_size}), ${c.num_attention_heads} q / ${c.num_key_value_heads} kv heads x ${c.head_dim}, NoPE layers ${JSON.stringify(c.nope_layers)}`);
    console.log(`decode reads ${(s.per_token.params / 1e6).toFixed(1)}M parameters = ${gb(s.per_token.bytes_bf16)} per token ` +
      `(lm_head ${(100 * s.per_token.lm_head_share_of_bytes).toFixed(1)}%; experts are ${(100 * s.per_token.experts_share_of_weights).toFixed(1)}% of the weights): ` +
      `roofline ${s.per_token.roofline_decode_tok_s.toFixed(1)} tok/s at ${bandwidth.best_gb_s.toFixed(1)} GB/s (best pass), ` +
      `${s.per_token.roofline_median_decode_tok_s.toFixed(1)} tok/s at ${bandwidth.median_gb_s.toFixed(1)} GB/s (median)`);
    console.log();
    const ours = s.results.find((r) => r.name === "llama4-ts (bf16 weights, f32 math)");
    const llamaF32 = s.results.find((r) => r.name === "llama.cpp (f32)");
    const rows = [["engine", "prefill tok/s", "decode tok/s", "decode / roofline (beside, median, best)", "prefill / llama.cpp",
      "decode / llama.cpp", "decode pairs: median (range)", "greedy = llama4-ts f32"]];
    for (const r of s.results) {
      const base = s.results.find((b) => b.name === r.baseline);
      let same = "-";
      if (r.check) same = r.check.same_tokens !== undefined ? `${r.check.same_tokens}/${r.check.of} (text)` : same;
      if (ours && r !== ours && r.tokens && !r.name.startsWith("llama.cpp")) same = `${sameTokens(ours.tokens, r.tokens)}/${opts.newTokens}`;
      const pairs = r.decode_pairs;
      rows.push([r.name, r.prefill_tok_s.toFixed(1), r.decode_tok_s ? r.decode_tok_s.toFixed(2) : "-",
        !r.decode_tok_s ? "-" : `${r.decode_beside_roofline_fraction === undefined ? "-" : (100 * r.decode_beside_roofline_fraction).toFixed(0) + "%"}, ` +
          `${(100 * r.decode_median_roofline_fraction).toFixed(0)}%, ${(100 * r.decode_roofline_fraction).toFixed(0)}%`,
        base ? `${(r.prefill_tok_s / base.prefill_tok_s).toFixed(2)}x vs ${base.weights}` +
          (r === ours && llamaF32 ? `, ${(r.prefill_tok_s / llamaF32.prefill_tok_s).toFixed(2)}x vs f32` : "") : "-",
        base ? `${(r.decode_tok_s / base.decode_tok_s).toFixed(2)}x vs ${base.weights}` +
          (r.decode_tok_s_per_gb_s && base.decode_tok_s_per_gb_s ? ` (${(r.decode_tok_s_per_gb_s / base.decode_tok_s_per_gb_s).toFixed(2)}x per GB/s)` : "") : "-",
        pairs ? `${pairs.median_ratio.toFixed(2)}x (${pairs.min_ratio.toFixed(2)}-${pairs.max_ratio.toFixed(2)}, ${pairs.pairs.length} pairs)` : "-",
        same]);
    }
    console.log(markdownTable(rows));
    console.log();
    for (const r of s.results.filter((x) => x.memory && x.matmul_precision !== "medium")) {
      const m = r.memory;
      console.log(`peak RSS ${r.name}: ${gb(m.peak_rss_bytes)} = ${m.ratio.toFixed(2)}x (weights ${gb(m.weight_bytes)} + KV cache ${gb(m.kv_cache_bytes)})`);
    }
    const llama = s.results.find((r) => r.check_f32);
    if (llama) console.log(`\ngreedy on the f32 GGUF: llama.cpp = llama4-ts for ${llama.check_f32.same_tokens}/${llama.check_f32.of} tokens`);
  }

  writeFileSync(join(CACHE, "last-result.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${join(CACHE, "last-result.json")}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
