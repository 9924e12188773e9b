// Per-token cost of the TypeScript generate() loop over a bare loop of native forward calls, on a
// tiny fixture model (where the forward itself is cheap, so the loop's own cost shows).
// Usage: node bench/generate-overhead.mjs [--tokens N] [--model DIR]
import { createRequire } from "node:module";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { Llama4ForCausalLM } = require("llama4-ts");
const { native } = require(join(root, "dist", "sdk", "native.js"));

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const tokens = Number(arg("tokens", 200));
const dir = arg("model", join(root, "test", "fixtures", "models", "tiny-llama4-f32"));
const prompt = [5, 17, 99, 123, 250];

function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

async function bareLoop(engine) {
  const cache = engine.createCache(1);
  let out = await engine.forward({ inputIds: Int32Array.from(prompt), batch: 1, seqLen: prompt.length, cache, logitsToKeep: 1 });
  for (let n = 1; n < tokens; n++) {
    out = await engine.forward({ inputIds: Int32Array.of(argmax(out.logits)), batch: 1, seqLen: 1, cache, logitsToKeep: 1 });
  }
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function time(fn) {
  await fn(); // warm-up
  const runs = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    await fn();
    runs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(runs);
}

const model = await Llama4ForCausalLM.from_pretrained(dir);
const engine = await native().loadModel(dir, { dtype: "auto" });
const bare = await time(() => bareLoop(engine));
const full = await time(() => model.generate({ input_ids: [prompt], max_new_tokens: tokens, min_new_tokens: tokens }));
console.log(`model: ${dir}`);
console.log(`bare native forward loop: ${(bare / tokens * 1000).toFixed(1)} us/token`);
console.log(`model.generate (greedy):   ${(full / tokens * 1000).toFixed(1)} us/token`);
console.log(`overhead of the TS loop:   ${((full - bare) / tokens * 1000).toFixed(1)} us/token (x${(full / bare).toFixed(2)})`);
