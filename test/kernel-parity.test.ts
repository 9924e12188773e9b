// The parity suites (text and vision, 1e-4 against transformers; quantized weights against their emulations; the
// attention implementations against eager) once more under every kernel set the CPU has besides the default one,
// forced by LLAMA4_TS_KERNELS: the set is chosen once per process, so each run is a child vitest whose JSON results
// are checked here test by test.
import { describe, expect, test } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { availableKernels } from "../sdk";

const ROOT = join(__dirname, "..");
const SUITES = ["test/text-parity.test.ts", "test/vision-parity.test.ts", "test/quantization.test.ts", "test/attention-implementations.test.ts"];

describe("parity under every kernel set", () => {
  test.each(availableKernels().slice(1))("LLAMA4_TS_KERNELS=%s", (set) => {
    const dir = mkdtempSync(join(tmpdir(), "kernel-parity-"));
    try {
      const out = join(dir, "results.json");
      const vitest = join(ROOT, "node_modules", "vitest", "vitest.mjs");
      const r = spawnSync(process.execPath, [vitest, "run", ...SUITES, "--reporter=json", `--outputFile=${out}`], {
        cwd: ROOT,
        env: { ...process.env, LLAMA4_TS_KERNELS: set, CI: "" },
        encoding: "utf8",
        timeout: 600_000,
      });
      const results = JSON.parse(readFileSync(out, "utf8"));
      const failed = results.testResults.flatMap((f: { assertionResults: { status: string; fullName: string }[] }) =>
        f.assertionResults.filter((a) => a.status !== "passed").map((a) => a.fullName));
      expect(failed, r.stderr).toEqual([]);
      expect(results.numPassedTests).toBeGreaterThanOrEqual(30);
      expect(results.numTotalTests).toBe(results.numPassedTests);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
