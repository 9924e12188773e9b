// NODE_PATH for tslab's TypeScript compiler.
//
// A notebook's `import { pipeline } from "llama4-ts"` is resolved twice in tslab: by Node when the
// compiled cell runs (require from the notebook's directory, which honours NODE_PATH) and, before
// that, by tslab's TypeScript compiler to type-check the cell (a failed resolution is an error and
// the cell does not run). TypeScript ignores NODE_PATH. This patch makes it honour it the way Node
// does: after every `node_modules` folder from the notebook's directory up to the root, look in the
// NODE_PATH folders. It does so by presenting the NODE_PATH folders' contents under the last
// folder TypeScript probes, `/node_modules`, when that path does not exist on disk.

import * as path from "node:path";

/** The subset of TypeScript's `ts.sys` the patch wraps. */
export interface TsSys {
  fileExists(p: string): boolean;
  directoryExists(p: string): boolean;
  readFile(p: string, encoding?: string): string | undefined;
  realpath?(p: string): string;
  getDirectories(p: string): string[];
  readDirectory(p: string, extensions?: readonly string[], exclude?: readonly string[], include?: readonly string[], depth?: number): string[];
}

/** NODE_PATH as a list of absolute directories. */
export function nodePathEntries(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.NODE_PATH ?? "")
    .split(path.delimiter)
    .filter((p) => p.length > 0 && path.isAbsolute(p))
    .map((p) => path.resolve(p).split(path.sep).join("/"));
}

const PATCHED = Symbol.for("llama4-ts.kernel.node-path-patched");

/**
 * Patches `sys` (tslab's `ts.sys`, before tslab creates its compiler) so that module resolution
 * finds packages of the `entries` folders. Idempotent. Returns false when there is nothing to do.
 */
export function patchTypeScriptSys(sys: TsSys, entries: string[]): boolean {
  if (entries.length === 0) return false;
  const s = sys as TsSys & { [PATCHED]?: boolean };
  if (s[PATCHED]) return false;
  s[PATCHED] = true;

  const orig = {
    fileExists: sys.fileExists.bind(sys),
    directoryExists: sys.directoryExists.bind(sys),
    readFile: sys.readFile.bind(sys),
    realpath: sys.realpath?.bind(sys),
    getDirectories: sys.getDirectories.bind(sys),
    readDirectory: sys.readDirectory.bind(sys),
  };
  const ROOT = "/node_modules";

  /** `/node_modules/<rest>` -> the first NODE_PATH folder that has `<rest>`; undefined otherwise. */
  const mapped = (p: string): string | undefined => {
    if (!p.startsWith(ROOT + "/")) return undefined;
    const rest = p.slice(ROOT.length + 1);
    for (const e of entries) {
      const candidate = e + "/" + rest;
      if (orig.fileExists(candidate) || orig.directoryExists(candidate)) return candidate;
    }
    return undefined;
  };

  sys.fileExists = (p) => {
    if (orig.fileExists(p)) return true;
    const m = mapped(p);
    return m !== undefined && orig.fileExists(m);
  };
  sys.directoryExists = (p) => {
    if (orig.directoryExists(p)) return true;
    if (p === ROOT || p === ROOT + "/") return entries.some((e) => orig.directoryExists(e));
    const m = mapped(p);
    return m !== undefined && orig.directoryExists(m);
  };
  sys.readFile = (p, encoding) => {
    if (orig.fileExists(p)) return orig.readFile(p, encoding);
    const m = mapped(p);
    return m !== undefined ? orig.readFile(m, encoding) : orig.readFile(p, encoding);
  };
  if (orig.realpath) {
    const realpath = orig.realpath;
    // A file found through NODE_PATH keeps its /node_modules/... name: TypeScript then treats it as
    // part of a package and names its types by package ("llama4-ts/dist/..."), as it does for
    // node_modules. (With the real path outside any node_modules, its declaration emit tries a
    // relative path from the notebook and fails.)
    sys.realpath = (p) => (orig.fileExists(p) || orig.directoryExists(p) || mapped(p) === undefined ? realpath(p) : p);
  }
  sys.getDirectories = (p) => {
    if (orig.directoryExists(p)) return orig.getDirectories(p);
    const m = mapped(p);
    return m !== undefined ? orig.getDirectories(m) : [];
  };
  sys.readDirectory = (p, extensions, exclude, include, depth) => {
    if (orig.directoryExists(p)) return orig.readDirectory(p, extensions, exclude, include, depth);
    const m = mapped(p);
    return m !== undefined ? orig.readDirectory(m, extensions, exclude, include, depth) : [];
  };
  return true;
}
