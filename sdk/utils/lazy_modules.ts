// sharp (libvips) and @huggingface/hub (with its Xet WebAssembly) hold about 18 MB and 10 MB of resident memory
// once loaded. Both are loaded on first use, so a session that runs text through a local checkpoint never pays
// for them: loading the SDK took a Node 20 process from 40 MB to 66 MB resident when they were imported eagerly.
import type * as Hub from "@huggingface/hub";
import type Sharp from "sharp";

let sharpModule: typeof Sharp | undefined;
let hubModule: typeof Hub | undefined;

export function sharpLib(): typeof Sharp {
  return (sharpModule ??= require("sharp") as typeof Sharp);
}

export function hubLib(): typeof Hub {
  return (hubModule ??= require("@huggingface/hub") as typeof Hub);
}
