// The small trained Llama-4-architecture model shipped in the package (models/), used wherever
// no checkpoint is named: notebooks, the CLI. LLAMA4_TS_MODEL (an id or a directory) overrides it.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export const EMBEDDED_MODEL_NAME = "llama4-tiny";

function packageRoot(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "models"))) return dir;
    if (dirname(dir) === dir) throw new Error(`llama4-ts: the models/ folder of the package was not found above ${__dirname}`);
  }
}

/** Directory of the embedded model. */
export function embedded_model_path(): string {
  return join(packageRoot(), "models", EMBEDDED_MODEL_NAME);
}

/** The model to use when none is named: $LLAMA4_TS_MODEL if set, else the embedded model. */
export function default_model(): string {
  const chosen = process.env.LLAMA4_TS_MODEL;
  return chosen && chosen.trim() ? chosen.trim() : embedded_model_path();
}
