// `node bench/profile.mjs [--shape moe|large-vocab] [--threads N] [--precision highest|medium] [--dtype auto|q8|q4]`: where one prefill (512 tokens) and one
// decode step (after a 512-token prompt) spend their time, op by op, on a benchmark checkpoint (made by
// `npm run bench` first). Samples the engine with Linux perf (`apt-get install linux-perf`) and sorts the
// forward thread's call stacks into ops with bench/profile_ops.py.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const shape = flag("--shape", "moe");
const threads = Number(flag("--threads", availableParallelism()));
const precision = flag("--precision", "highest");  // torch.set_float32_matmul_precision
const dtype = flag("--dtype", "auto");  // from_pretrained's dtype: q8 / q4 quantize at load
const dir = join(HERE, ".cache", `${shape}-v1`);

if (spawnSync("perf", ["--version"]).status !== 0) {
  console.error("bench/profile.mjs needs Linux perf: apt-get install linux-perf");
  process.exit(1);
}

// The workload runs in a child: it loads and warms up, says READY, waits for GO, runs the phase, says DONE.
const WORKLOAD = `
  const sdk = require(${JSON.stringify(join(HERE, "..", "dist", "sdk", "index.js"))});
  const [dir, phase, threads, precision, dtype] = process.argv.slice(1);
  sdk.setNumThreads(Number(threads));
  sdk.torch.set_float32_matmul_precision(precision);
  const ids = Array.from({ length: 512 }, (_, i) => 1 + (i * 7919) % 8000);
  (async () => {
    const model = await sdk.Llama4ForCausalLM.from_pretrained(dir, { dtype });
    let out = await model.forward({ input_ids: [ids], use_cache: true, logits_to_keep: 1 });
    for (let i = 0; i < 4; i++) out = await model.forward({ input_ids: [[5]], past_key_values: out.past_key_values, logits_to_keep: 1 });
    process.stdout.write("READY\\n");
    await new Promise((resolve) => process.stdin.once("data", resolve));
    const t = performance.now();
    const n = phase === "prefill" ? 3 : 150;
    for (let i = 0; i < n; i++) {
      if (phase === "prefill") await model.forward({ input_ids: [ids], logits_to_keep: 1 });
      else out = await model.forward({ input_ids: [[5]], past_key_values: out.past_key_values, logits_to_keep: 1 });
    }
    const perCall = (performance.now() - t) / n;
    process.stdout.write("DONE " + perCall.toFixed(2) + "\\n");
    process.exit(0);
  })();`;

async function profile(phase) {
  const work = join(mkdtempSync(join(tmpdir(), "llama4-ts-profile-")), "perf.data");
  const child = spawn(process.execPath, ["-e", WORKLOAD, dir, phase, String(threads), precision, dtype], { stdio: ["pipe", "pipe", "inherit"] });
  let perf;
  const perCallMs = await new Promise((resolve, reject) => {
    child.on("exit", (code) => code && reject(new Error(`the workload exited with ${code}`)));
    child.stdout.on("data", (chunk) => {
      const text = chunk.toString();
      if (text.startsWith("READY")) {
        perf = spawn("perf", ["record", "-q", "-F", "999", "--call-graph", "dwarf,32768", "-p", String(child.pid), "-o", work]);
        setTimeout(() => child.stdin.write("GO\n"), 500);
      } else if (text.startsWith("DONE")) {
        resolve(Number(text.split(" ")[1]));
      }
    });
  });
  perf.kill("SIGINT");
  await new Promise((resolve) => perf.on("exit", resolve));
  const script = spawnSync("perf", ["script", "-i", work], { maxBuffer: 1 << 30 });
  const table = spawnSync("python3", [join(HERE, "profile_ops.py")], { input: script.stdout, encoding: "utf8" });
  rmSync(dirname(work), { recursive: true, force: true });
  const what = phase === "prefill" ? "one 512-token prefill" : "one decode step after a 512-token prompt";
  console.log(`\n${shape}, ${what}: ${perCallMs.toFixed(1)} ms (${threads} threads, matmul precision ${precision}, under perf)\n`);
  console.log(table.stdout.trim());
}

await profile("prefill");
await profile("decode");
