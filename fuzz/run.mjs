#!/usr/bin/env node
// The fuzz campaign: seeded mutations of every input surface, run in child processes (fuzz/worker.mjs) under a
// time and memory limit. Each child runs many cases in a row; a child that dies is restarted and its death is
// attributed to the case it was running. Findings (a death, a hang, a run over the memory limit, a silent NaN,
// an error that names nothing) are saved with a one-line repro.
//
//   npm run fuzz -- --minutes 10 --seed 1            a campaign (needs `npm run build`: it runs dist/)
//   npm run fuzz -- --cases 500 --seed 1             a fixed number of cases (the CI smoke)
//   npm run fuzz -- --repro config-json:1:1234        one case, in this process, with its error printed
// Options: --workers N (default: the CPU count), --surfaces a,b (default: all), --out DIR (findings and summary;
// default: a folder in the system temp dir), --case-timeout S (30), --memory-limit GIB (4).
import { fork } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { SURFACES } from "./surfaces.mjs";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string" },
    cases: { type: "string" },
    seed: { type: "string", default: "1" },
    workers: { type: "string" },
    surfaces: { type: "string" },
    out: { type: "string" },
    repro: { type: "string" },
    "case-timeout": { type: "string", default: "30" },
    "memory-limit": { type: "string", default: "4" },
    quiet: { type: "boolean", default: false },
  },
});

const WORKER = join(import.meta.dirname, "worker.mjs");
const GIB = 2 ** 30;
const memoryLimit = Number(args["memory-limit"]) * GIB;
const caseTimeout = Number(args["case-timeout"]) * 1000;
// The child's V8 heap and the SDK's own allocation checks stay below the limit the driver enforces, so that a
// case asking for too much is refused by the SDK (an Error) rather than killed here.
const childEnv = { ...process.env, LLAMA4_TS_MEMORY_LIMIT: String(Math.floor(memoryLimit * 0.6)) };
const childArgv = [`--max-old-space-size=${Math.floor((memoryLimit * 0.6) / 2 ** 20)}`];

if (args.repro) {
  const [surface, seed, index] = args.repro.split(":");
  process.env.LLAMA4_TS_MEMORY_LIMIT = childEnv.LLAMA4_TS_MEMORY_LIMIT;
  const { runCase } = await import("./worker.mjs");
  const result = await runCase({ surface, seed, index: Number(index) });
  console.log(JSON.stringify(result, null, 2));
  process.exit(0);
}

const surfaces = args.surfaces ? args.surfaces.split(",") : Object.keys(SURFACES);
for (const s of surfaces) if (!SURFACES[s]) throw new Error(`--surfaces: unknown surface "${s}" (known: ${Object.keys(SURFACES).join(", ")})`);
const seed = args.seed;
const maxCases = args.cases ? Number(args.cases) : Infinity;
const deadline = args.minutes ? Date.now() + Number(args.minutes) * 60_000 : Infinity;
if (maxCases === Infinity && deadline === Infinity) throw new Error("give --minutes N or --cases N");
const workers = Number(args.workers ?? availableParallelism());
const out = args.out ?? join(tmpdir(), "llama4-ts-fuzz", `seed${seed}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
mkdirSync(out, { recursive: true });
const findingsPath = join(out, "findings.jsonl");
writeFileSync(findingsPath, "");

// Cases are dealt in a fixed, weighted order of surfaces; each surface numbers its own cases from 0.
const schedule = surfaces.flatMap((s) => Array(SURFACES[s].weight).fill(s));
const nextIndex = Object.fromEntries(surfaces.map((s) => [s, 0]));
let dealt = 0;
function nextCase() {
  if (dealt >= maxCases || Date.now() >= deadline) return null;
  const surface = schedule[dealt++ % schedule.length];
  return { surface, seed, index: nextIndex[surface]++ };
}

const stats = Object.fromEntries(surfaces.map((s) => [s, { cases: 0, ok: 0, error: 0 }]));
const FINDINGS = ["death", "hang", "over-limit", "nan", "unnamed", "harness"];
const findingCounts = Object.fromEntries(FINDINGS.map((f) => [f, 0]));
let peakRss = 0;
let restarts = 0;
const started = Date.now();

function record(c, outcome, message, extra = {}) {
  const s = stats[c.surface];
  s.cases++;
  if (outcome === "ok" || outcome === "error") {
    s[outcome]++;
    return;
  }
  s[outcome] = (s[outcome] ?? 0) + 1;
  findingCounts[outcome]++;
  const repro = `npm run fuzz -- --repro ${c.surface}:${c.seed}:${c.index}`;
  appendFileSync(findingsPath, JSON.stringify({ ...c, outcome, message, repro, ...extra }) + "\n");
  if (!args.quiet) console.log(`${outcome}: ${c.surface} #${c.index}: ${message}\n  repro: ${repro}`);
}

/** The resident set of a process, from /proc (0 where there is none). */
function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** One child: runs cases until none are left; on a death, hang or over-limit it records the case and restarts. */
async function lane() {
  for (;;) {
    const child = fork(WORKER, { execArgv: childArgv, env: childEnv, stdio: ["ignore", "ignore", "pipe", "ipc"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-2000)));
    const ended = await new Promise((resolve) => {
      let current = null;
      let timer = null;
      let killedFor = null;
      const poll = setInterval(() => {
        const rss = rssOf(child.pid);
        peakRss = Math.max(peakRss, rss);
        if (current && rss > memoryLimit && !killedFor) {
          killedFor = { outcome: "over-limit", message: `resident memory ${(rss / GIB).toFixed(2)} GiB > ${args["memory-limit"]} GiB` };
          child.kill("SIGKILL");
        }
      }, 100);
      const send = () => {
        current = nextCase();
        if (!current) {
          child.kill();
          return;
        }
        timer = setTimeout(() => {
          killedFor = { outcome: "hang", message: `no result after ${caseTimeout / 1000} s` };
          child.kill("SIGKILL");
        }, caseTimeout);
        child.send(current);
      };
      child.on("message", (m) => {
        if (m.ready) return send();
        clearTimeout(timer);
        peakRss = Math.max(peakRss, m.rss);
        record(current, m.outcome, m.message);
        send();
      });
      child.on("exit", (code, signal) => {
        clearInterval(poll);
        clearTimeout(timer);
        if (current) {
          const death = killedFor ?? { outcome: "death", message: `child exited (code ${code}, signal ${signal}): ${stderr.trim().split("\n").slice(-3).join(" | ")}` };
          record(current, death.outcome, death.message);
          resolve(true);
        } else resolve(false);
      });
    });
    if (!ended) return;
    restarts++;
  }
}

const progress = args.quiet ? null : setInterval(() => {
  const total = Object.values(stats).reduce((n, s) => n + s.cases, 0);
  console.log(`${new Date().toISOString()} ${total} cases, findings ${JSON.stringify(findingCounts)}`);
}, 60_000);
await Promise.all(Array.from({ length: workers }, lane));
if (progress) clearInterval(progress);

const total = Object.values(stats).reduce((n, s) => n + s.cases, 0);
const summary = {
  seed, workers, minutes: +((Date.now() - started) / 60_000).toFixed(2), cases: total, surfaces: stats, findings: findingCounts,
  child_restarts: restarts, peak_child_rss_gib: +(peakRss / GIB).toFixed(3), case_timeout_s: caseTimeout / 1000,
  memory_limit_gib: memoryLimit / GIB, out,
};
writeFileSync(join(out, "summary.json"), JSON.stringify(summary, null, 2));
console.log(JSON.stringify(summary, null, 2));
process.exitCode = Object.values(findingCounts).some((n) => n > 0) ? 1 : 0;
