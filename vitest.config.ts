import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/unpack-fixtures.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Under CI, also write vitest's JSON results so .ci/run can print the pass/fail counts from them.
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: "test-results/vitest.json" },
  },
});
