// `npm run bench`: llama4-ts vs transformers (PyTorch, CPU) on the same Scout-shaped random checkpoint.
// Needs python3 with torch + transformers (to write the checkpoint and for the reference timings).
// Flags: --threads N (default: all cores), --prompt-tokens N (128), --new-tokens N (32), --repeats N (3).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CACHE = join(HERE, ".cache");
// Bump the suffix when make_scout_like.py changes, so a stale cached checkpoint is not reused.
const MODEL_DIR = join(CACHE, "scout-like-v2");

function parseArgs(argv) {
  const opts = { threads: availableParallelism(), promptTokens: 128, newTokens: 32, repeats: 3 };
  const names = { "--threads": "threads", "--prompt-tokens": "promptTokens", "--new-tokens": "newTokens", "--repeats": "repeats" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.split("=", 2);
    const key = names[flag];
    const value = Number(inline ?? argv[++i]);
    if (!key || !Number.isInteger(value) || value < 1) {
      console.error(`usage: node bench/run.mjs [--threads N] [--prompt-tokens N] [--new-tokens N] [--repeats N] (bad: ${arg})`);
      process.exit(2);
    }
    opts[key] = value;
  }
  return opts;
}

function python(args, what) {
  const r = spawnSync("python3", args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    process.stderr.write(r.stderr ?? "");
    throw new Error(`${what} failed (python3 ${args.join(" ")}): ${r.error?.message ?? `exit ${r.status}`}`);
  }
  return r.stdout;
}

function ensureCheckpoint() {
  if (existsSync(join(MODEL_DIR, "config.json"))) return;
  console.log(`writing the benchmark checkpoint to ${MODEL_DIR} (once, ~1.3 GB)...`);
  // Write to a temp dir and rename, so an interrupted run never leaves a half checkpoint behind.
  const tmp = `${MODEL_DIR}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(CACHE, { recursive: true });
  console.log(python([join(HERE, "make_scout_like.py"), tmp], "writing the checkpoint").trim());
  renameSync(tmp, MODEL_DIR);
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

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function loadSdk() {
  const require = createRequire(import.meta.url);
  try {
    return require("llama4-ts");
  } catch {
    return require("../dist/sdk/index.js");
  }
}

async function benchOurs(sdk, ids, opts) {
  const t0 = performance.now();
  const model = await sdk.Llama4ForCausalLM.from_pretrained(MODEL_DIR, { dtype: "auto" });
  const loadS = (performance.now() - t0) / 1000;
  const run = async () => {
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
  await run(); // warm-up: page in the mapped weights, size the scratch buffers
  const runs = [];
  for (let i = 0; i < opts.repeats; i++) runs.push(await run());
  const prefill = runs.map((r) => ids.length / r.prefillS);
  const decode = runs.map((r) => opts.newTokens / r.decodeS);
  return {
    name: "llama4-ts (bf16 weights, f32 math)",
    threads: sdk.getNumThreads(),
    load_s: loadS,
    prefill_tok_s: median(prefill),
    decode_tok_s: median(decode),
    prefill_runs: prefill,
    decode_runs: decode,
    tokens: runs.at(-1).tokens,
  };
}

function benchTorch(dtype, idsPath, opts) {
  const out = python(
    [join(HERE, "torch_bench.py"), MODEL_DIR, idsPath, "--dtype", dtype, "--threads", String(opts.threads),
      "--new-tokens", String(opts.newTokens), "--repeats", String(opts.repeats)],
    `torch ${dtype} benchmark`,
  );
  return JSON.parse(out.trim().split("\n").at(-1));
}

function sameTokens(a, b) {
  let n = 0;
  while (n < a.length && a[n] === b[n]) n++;
  return n;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  ensureCheckpoint();
  const config = JSON.parse(readFileSync(join(MODEL_DIR, "config.json"), "utf8"));
  const bytes = readdirSync(MODEL_DIR).reduce((s, f) => s + statSync(join(MODEL_DIR, f)).size, 0);
  const ids = promptIds(opts.promptTokens, config.vocab_size);
  const idsPath = join(CACHE, "prompt-ids.json");
  writeFileSync(idsPath, JSON.stringify(ids));

  const sdk = loadSdk();
  sdk.setNumThreads(opts.threads);
  console.log(`timing llama4-ts, torch bfloat16, torch float32 (${opts.threads} threads)...`);
  const ours = await benchOurs(sdk, ids, opts);
  // Torch runs after ours, in child processes, so the engines never compete for cores.
  const torchRuns = ["bfloat16", "float32"].map((d) => benchTorch(d, idsPath, opts));

  const noRope = config.no_rope_layers.map((use, i) => (use ? null : i)).filter((i) => i !== null);
  const facts = {
    date: new Date().toISOString(),
    threads: opts.threads,
    simd: sdk.simdKernels(),
    node: process.version,
    torch: torchRuns[0].torch,
    transformers: torchRuns[0].transformers,
    checkpoint_gb: bytes / 1e9,
    config: {
      vocab_size: config.vocab_size, hidden_size: config.hidden_size, num_hidden_layers: config.num_hidden_layers,
      num_attention_heads: config.num_attention_heads, num_key_value_heads: config.num_key_value_heads,
      head_dim: config.head_dim, intermediate_size: config.intermediate_size, num_local_experts: config.num_local_experts,
      num_experts_per_tok: config.num_experts_per_tok, moe_layers: config.moe_layers, nope_layers: noRope,
    },
    prompt_tokens: opts.promptTokens,
    new_tokens: opts.newTokens,
    repeats: opts.repeats,
  };

  const c = facts.config;
  console.log();
  console.log(`checkpoint  ${facts.checkpoint_gb.toFixed(2)} GB bf16: vocab ${c.vocab_size}, hidden ${c.hidden_size}, ${c.num_hidden_layers} layers ` +
    `(MoE ${JSON.stringify(c.moe_layers)}: ${c.num_local_experts} experts, top-${c.num_experts_per_tok} + shared, ffn ${c.intermediate_size}), ` +
    `${c.num_attention_heads} q / ${c.num_key_value_heads} kv heads x ${c.head_dim}, NoPE layers ${JSON.stringify(noRope)}`);
  console.log(`machine     ${facts.threads} threads, llama4-ts SIMD ${facts.simd}, node ${facts.node}, torch ${facts.torch}, transformers ${facts.transformers}`);
  console.log(`workload    ${opts.promptTokens}-token prefill, then ${opts.newTokens} greedy decode steps; median of ${opts.repeats} after a warm-up`);
  console.log();
  const rows = [["engine", "prefill tok/s", "decode tok/s", "llama4-ts / this (prefill)", "llama4-ts / this (decode)", "greedy = llama4-ts"]];
  for (const r of [ours, ...torchRuns]) {
    const same = r === ours ? "-" : `${sameTokens(ours.tokens, r.tokens)}/${opts.newTokens}`;
    rows.push([r.name, r.prefill_tok_s.toFixed(1), r.decode_tok_s.toFixed(2),
      r === ours ? "-" : `${(ours.prefill_tok_s / r.prefill_tok_s).toFixed(2)}x`,
      r === ours ? "-" : `${(ours.decode_tok_s / r.decode_tok_s).toFixed(2)}x`, same]);
  }
  const widths = rows[0].map((_, j) => Math.max(...rows.map((row) => row[j].length)));
  for (const row of rows) console.log(row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join("   "));

  const result = { ...facts, results: [ours, ...torchRuns] };
  writeFileSync(join(CACHE, "last-result.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(`\nwrote ${join(CACHE, "last-result.json")}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
