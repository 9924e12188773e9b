// A child process that runs fuzz cases one after another, as the driver sends them, and reports how each ended.
// It holds the SDK, a loaded base model / tokenizer / image processor for the surfaces that do not mutate them,
// and a local HTTP server standing in for the web. A case that kills it is attributed by the driver.
import { createRequire } from "node:module";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { rngFor } from "./mutate.mjs";
import { F32, SURFACES, TOKENIZER } from "./surfaces.mjs";

const sdk = createRequire(import.meta.url)(join(import.meta.dirname, "..", "dist", "sdk", "index.js"));
const scratch = mkdtempSync(join(tmpdir(), "llama4-ts-fuzz-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

/** The web, as the image-paths-urls surface sees it. */
async function startServer() {
  const png = readFileSync(join(import.meta.dirname, "..", "test", "fixtures", "images", "tiny.png"));
  const server = createServer((req, res) => {
    const name = (req.url ?? "/").slice(1);
    switch (name) {
      case "ok.png": return res.writeHead(200, { "Content-Length": png.length }).end(png);
      case "error": return res.writeHead(500).end("boom");
      case "redirect-loop": return res.writeHead(302, { Location: "/redirect-loop" }).end();
      case "huge": return res.writeHead(200, { "Content-Length": String(2 ** 40) }).end(png);
      case "endless": {
        res.writeHead(200);
        const block = Buffer.alloc(1 << 20, 7);
        const pump = () => { while (res.write(block)); };
        res.on("drain", pump);
        res.on("close", () => res.off("drain", pump));
        return pump();
      }
      case "slow": return setTimeout(() => res.writeHead(200).end(png), 1000);
      case "html": return res.writeHead(200, { "Content-Type": "text/html" }).end("<html>not an image</html>");
      case "truncated": return res.writeHead(200).end(png.subarray(0, png.length >> 1));
      case "empty": return res.writeHead(200).end();
      default: return res.writeHead(404).end("not found");
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  return `http://127.0.0.1:${server.address().port}`;
}

const once = (make) => {
  let value;
  return () => (value ??= make());
};
const ctx = {
  sdk,
  server: await startServer(),
  model: once(() => sdk.Llama4ForCausalLM.from_pretrained(F32)),
  tokenizer: once(() => sdk.AutoTokenizer.from_pretrained(TOKENIZER)),
  imageProcessor: once(() => sdk.Llama4ImageProcessor.from_pretrained(TOKENIZER)),
};

/** Where in the result a NaN or infinity sits, if anywhere (typed arrays, Tensors, arrays, plain objects). Processed
 * scores may hold -infinity (transformers' warpers mask tokens so); NaN is never a result. */
function nonFinite(value, path = "result", depth = 0) {
  if (depth > 6 || value === null || value === undefined) return null;
  const allowed = path.includes("scores") ? (v) => !Number.isNaN(v) && v !== Infinity : Number.isFinite;
  if (typeof value === "number") return Number.isFinite(value) || Number.isInteger(value) ? null : path;
  if (value instanceof Float32Array || value instanceof Float64Array) {
    const i = value.findIndex((v) => !allowed(v));
    return i >= 0 ? `${path}[${i}]` : null;
  }
  if (ArrayBuffer.isView(value) || typeof value !== "object") return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < Math.min(value.length, 64); i++) {
      const p = nonFinite(value[i], `${path}[${i}]`, depth + 1);
      if (p) return p;
    }
    return null;
  }
  for (const [k, v] of Object.entries(value)) {
    const p = nonFinite(v, `${path}.${k}`, depth + 1);
    if (p) return p;
  }
  return null;
}

/** Runs one case in this process: { outcome: "ok" | "error" | "unnamed" | "nan", message }. */
export async function runCase({ surface, seed, index }) {
  const dir = join(scratch, `${surface}-${index}`);
  mkdirSync(dir, { recursive: true });
  try {
    let made;
    try {
      made = await SURFACES[surface].make(rngFor(seed, surface, index), { ...ctx, dir });
    } catch (err) {
      return { outcome: "harness", message: `making the case failed: ${err?.stack ?? err}`.slice(0, 500) };
    }
    const { hints, run } = made;
    try {
      const where = nonFinite(await run());
      return where ? { outcome: "nan", message: `non-finite value at ${where}` } : { outcome: "ok" };
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : `non-Error thrown: ${String(err)}`;
      const named = err instanceof Error && hints.some((h) => h !== "" && message.toLowerCase().includes(String(h).toLowerCase()));
      return { outcome: named ? "error" : "unnamed", message: message.slice(0, 500) };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.send) {
  process.on("message", async (c) => process.send({ ...c, ...(await runCase(c)), rss: process.memoryUsage().rss }));
  process.send({ ready: true });
}
