// The fuzz campaign's CI smoke: a fixed seed and case count over every surface (fuzz/run.mjs, on the build in
// dist/), which must end with no finding: no child death, hang, run over the memory limit, silent NaN or
// error that names nothing.
import { expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CASES = 2000;

test(`${CASES} seeded cases across all surfaces end in a result or an Error naming the culprit`, () => {
  const out = mkdtempSync(join(tmpdir(), "llama4-ts-fuzz-smoke-"));
  try {
    const run = join(__dirname, "..", "fuzz", "run.mjs");
    let log = "";
    try {
      log = execFileSync(process.execPath, [run, "--cases", String(CASES), "--seed", "13", "--workers", "2", "--out", out], { encoding: "utf8" });
    } catch (err) {
      log = String((err as { stdout?: string }).stdout ?? err); // exit code 1: there are findings, shown below
    }
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(summary.cases).toBe(CASES);
    for (const [surface, s] of Object.entries(summary.surfaces as Record<string, { cases: number }>)) {
      expect(s.cases, surface).toBeGreaterThan(100);
    }
    expect(summary.findings, log.split("\n").filter((l) => /^\S+: /.test(l) || l.includes("repro:")).join("\n"))
      .toEqual({ death: 0, hang: 0, "over-limit": 0, nan: 0, unnamed: 0, harness: 0 });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 300_000);
