// Time to turn one image file into Llama 4 pixel_values (decode + resize + normalise + tiles), for
// llama4-ts and, in the same run, for transformers' Llama4ImageProcessor when python3 can import
// it (it needs torch, torchvision, Pillow and transformers; PYTHONPATH is passed through).
// Usage: node bench/image-processor.mjs [--image PATH] [--repeats N] [--size 336] [--max-patches 16]
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { Llama4ImageProcessor } = require("llama4-ts");

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const image = arg("image", join(root, "test", "fixtures", "images", "pasta.jpeg"));
const repeats = Number(arg("repeats", 10));
const size = Number(arg("size", 336));
const maxPatches = Number(arg("max-patches", 16));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const processor = new Llama4ImageProcessor({ size: { height: size, width: size }, max_patches: maxPatches });
const times = [];
let first = 0;
let dims = [];
for (let r = 0; r <= repeats; r++) {
  const t = process.hrtime.bigint();
  const out = await processor(image);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r === 0) first = ms;
  else times.push(ms);
  dims = out.pixel_values.dims;
}

const python = `
import sys, time
from transformers.models.llama4.image_processing_llama4 import Llama4ImageProcessor
p = Llama4ImageProcessor(size={"height": ${size}, "width": ${size}}, max_patches=${maxPatches})
path, repeats = sys.argv[1], int(sys.argv[2])
times = []
for r in range(repeats + 1):
    t = time.perf_counter()
    p(path, return_tensors="pt")
    times.append((time.perf_counter() - t) * 1000)
print(times[0], sorted(times[1:])[len(times[1:]) // 2])
`;
const py = spawnSync("python3", ["-c", python, image, String(repeats)], { encoding: "utf8" });
const reference = py.status === 0 ? py.stdout.trim().split(/\s+/).map(Number) : null;

console.log(`${relative(root, image)}: pixel_values [${dims.join(", ")}], median of ${repeats} after a first call`);
console.log(`llama4-ts     first ${first.toFixed(1)} ms, then ${median(times).toFixed(1)} ms`);
if (reference) {
  console.log(`transformers  first ${reference[0].toFixed(1)} ms, then ${reference[1].toFixed(1)} ms ` +
    `(llama4-ts is ${(reference[1] / median(times)).toFixed(2)}x as fast)`);
} else {
  console.log(`transformers  not run: ${(py.stderr || "").trim().split("\n").at(-1)}`);
}
