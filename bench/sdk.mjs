// The SDK the bench scripts time: the installed package if there is one, else this checkout's build (dist/).
// SDK_PATH is the build's entry, for probes that run in a child process.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const SDK_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "sdk", "index.js");

export function loadSdk() {
  const require = createRequire(import.meta.url);
  try {
    return require("llama4-ts");
  } catch {
    return require(SDK_PATH);
  }
}
