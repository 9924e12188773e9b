// The llama4-ts Jupyter kernel: tslab's TypeScript kernel, started with three additions.
//
//   node dist/kernel/launcher.js --config-path <connection file> [--js]
//
// 1. TypeScript honours NODE_PATH (see node-path.ts). The kernelspec sets NODE_PATH to a folder
//    holding a `llama4-ts` package that forwards to this checkout, so `import ... from "llama4-ts"`
//    type-checks and runs from a notebook in any directory.
// 2. display() (display.ts) is handed tslab's jupyter module, the one that writes this kernel's
//    display messages.
// 3. SIGINT cancels every loaded model (interrupt.ts) on top of tslab's own handling, and the
//    interrupted cell prints one line ("generation cancelled after N tokens; ...") instead of
//    tslab's error and trace.
//
// tslab's `startKernel` is called with enableFindLocal: false, so a tslab installed in the
// notebook's own node_modules does not take over (it would not have these additions).
import { createRequire } from "node:module";
import * as path from "node:path";

import { useTslabJupyterModule } from "./display";
import { Llama4ForCausalLM } from "../sdk/models/llama4/modeling_llama4";
import { installInterruptHandler, installInterruptMessage, trackGenerations } from "./interrupt";
import { nodePathEntries, patchTypeScriptSys, type TsSys } from "./node-path";

interface StartKernelOptions {
  configPath: string;
  enableFindLocal: boolean;
  jsKernel: boolean;
  globalVersion: string;
}

function parseArgs(argv: string[]): { configPath: string; jsKernel: boolean } {
  let configPath = "";
  let jsKernel = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--config-path") configPath = argv[++i] ?? "";
    else if (a.startsWith("--config-path=")) configPath = a.slice("--config-path=".length);
    else if (a === "--js") jsKernel = true;
    else throw new Error(`llama4-ts kernel: unknown argument ${a}`);
  }
  if (!configPath) throw new Error("llama4-ts kernel: --config-path <connection file> is required");
  return { configPath, jsKernel };
}

export function main(argv = process.argv.slice(2)): void {
  const { configPath, jsKernel } = parseArgs(argv);
  const tslabDir = path.dirname(require.resolve("tslab/package.json"));
  const fromTslab = createRequire(path.join(tslabDir, "package.json"));

  // Same module instances as tslab's own requires: the compiler it will create uses this ts.sys.
  const ts = fromTslab("@tslab/typescript-for-tslab") as { sys: TsSys };
  patchTypeScriptSys(ts.sys, nodePathEntries());
  useTslabJupyterModule(fromTslab("./dist/jupyter.js"));
  installInterruptHandler();
  trackGenerations(Llama4ForCausalLM);
  installInterruptMessage();

  const { startKernel } = fromTslab("./dist/main.js") as { startKernel(o: StartKernelOptions): void };
  const version = (fromTslab("./package.json") as { version: string }).version;
  startKernel({ configPath, enableFindLocal: false, jsKernel, globalVersion: version });
}

if (require.main === module) main();
