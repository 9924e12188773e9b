// Builds the native engine (native/) with cmake-js during `npm install`.
// Checks for the tools first so a missing compiler is a clear message, not a wall of CMake output.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

function has(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return r.status === 0 ? r.stdout : null;
}

const missing = [];
if (!has("cmake", ["--version"])) missing.push("cmake (>= 3.15): e.g. `apt-get install cmake` or `brew install cmake`");
const cxx = process.env.CXX || "c++";
const probe = spawnSync(cxx, ["-std=c++17", "-x", "c++", "-fsyntax-only", "-"], {
  input: "#include <optional>\nint main() { std::optional<int> x; return 0; }\n",
  encoding: "utf8",
});
if (probe.status !== 0) missing.push(`a C++17 compiler (tried "${cxx}"): e.g. \`apt-get install g++\``);
if (missing.length) {
  console.error("llama4-ts: cannot build the native engine; missing:\n  - " + missing.join("\n  - "));
  process.exit(1);
}

const cmakeJs = join(dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
const args = [cmakeJs, "compile", "--directory", join(root, "native"), "--out", join(root, "native", "build")];
if (has("ninja", ["--version"])) args.push("--generator", "Ninja");
const r = spawnSync(process.execPath, args, { stdio: "inherit", cwd: root });
process.exit(r.status ?? 1);
