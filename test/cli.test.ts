// The llama4-ts command line, run as a user would (compiled package, child process).
import { afterAll, beforeAll, expect, test } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { FIXTURES, modelDir } from "./helpers/fixtures";

const CLI = join(__dirname, "..", "dist", "sdk", "cli.js");
const golden = JSON.parse(readFileSync(join(FIXTURES, "docs-examples-goldens.json"), "utf8"));
let dir: string;

beforeAll(() => {
  // the instruct fixture with its tokenizer beside it, as a checkpoint directory is laid out
  dir = mkdtempSync(join(tmpdir(), "llama4-cli-"));
  cpSync(modelDir("tiny-llama4-instruct"), dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]) cpSync(join(FIXTURES, "llama4-tokenizer", f), join(dir, f));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (args: string[], input?: string) =>
  execFileSync(process.execPath, [CLI, ...args], { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });

test("generate streams the greedy continuation transformers produced", () => {
  const out = run(["generate", golden.pipeline_string.prompt, "--model", dir, "--max-new-tokens", "12"]);
  expect(out).toBe(golden.pipeline_string.output[0].generated_text + "\n");
});

test("chat answers each line with the chat template applied", () => {
  const out = run(["chat", "--model", dir, "--max-new-tokens", "100"], "what is the recipe of mayonnaise?\n\n");
  const expected = golden.pipeline.output[0].generated_text.at(-1).content;
  // the first 100 of the pipeline's 200 greedy tokens
  expect(out.startsWith("> ")).toBe(true);
  expect(expected.startsWith(out.slice(2).split("\n")[0])).toBe(true);
  expect(out.slice(2).split("\n")[0].length).toBeGreaterThan(50);
});

test("--image: generate and chat answer a chat message with the image, as transformers' processor lays it out", () => {
  const multimodal = JSON.parse(readFileSync(join(FIXTURES, "multimodal-goldens.json"), "utf8")).docs;
  const dog = join(FIXTURES, "images", "dog.jpg");
  const question = multimodal.automodel_multimodal.messages[0].content[1].text;
  // generate: the image and the prompt as one chat message (the docs' AutoModel - Multimodal example)
  const out = run(["generate", question, "--image", dog, "--model", dir, "--max-new-tokens", "20"]);
  const answer = out.replace(/\n$/, "");
  expect(answer.length).toBeGreaterThan(20);
  expect(multimodal.automodel_multimodal.response.startsWith(answer)).toBe(true);
  // chat: the image goes with the first message, as the docs' AutoModel - Multimodal example has it
  const chat = run(["chat", "--image", dog, "--model", dir, "--max-new-tokens", "20"], `${multimodal.automodel_multimodal.messages[0].content[1].text}\n\n`);
  expect(multimodal.automodel_multimodal.response.startsWith(chat.slice(2).split("\n")[0])).toBe(true);
  expect(chat.slice(2).split("\n")[0].length).toBeGreaterThan(20);
  expect(() => run(["generate", "x", "--image", join(FIXTURES, "images", "missing.jpg"), "--model", dir])).toThrow(/missing\.jpg/);
});

test("npm start reports an LLAMA4_TS_MODEL that cannot resolve before JupyterLab starts", () => {
  const start = join(__dirname, "..", "scripts", "start-jupyter.mjs");
  const r = spawnSync(process.execPath, [start], { encoding: "utf8", env: { ...process.env, LLAMA4_TS_MODEL: join(dir, "no-such-model") }, timeout: 30_000 });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain(`LLAMA4_TS_MODEL=${join(dir, "no-such-model")} cannot be used: ${join(dir, "no-such-model")}: not a local directory`);
  expect(r.stdout).not.toContain("starting JupyterLab");
  // A folder without config.json is named as such.
  const r2 = spawnSync(process.execPath, [start], { encoding: "utf8", env: { ...process.env, LLAMA4_TS_MODEL: FIXTURES }, timeout: 30_000 });
  expect(r2.status).toBe(1);
  expect(r2.stderr).toContain(`${FIXTURES}: missing config.json`);
});

test("bad usage is a clear message and a non-zero exit", () => {
  expect(() => run(["bogus"])).toThrow(/unknown command "bogus"/);
  expect(() => run(["generate", "--model", dir])).toThrow(/generate needs a prompt/);
  expect(() => run(["generate", "x", "--model", join(dir, "nope")])).toThrow(/nope: not a local directory/);
  expect(() => run(["generate", "x", "--max-new-token", "3"])).toThrow(/unknown option '--max-new-token' \(did you mean '--max-new-tokens'\?\)/);
  expect(() => run(["chat", "--sytem", "terse"])).toThrow(/unknown option '--sytem' \(did you mean '--system'\?\)/);
  expect(() => run(["chat", "--frobnicate"])).toThrow(/unknown option '--frobnicate'\n/);
});
