// sdk/hub against a local stand-in for the Hub (test/helpers/hub-server.ts on 127.0.0.1):
// the standard cache layout, only the requested files, revisions, auth, offline mode, resume,
// verification and the error for each failure.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";

import { HubError, resolvePretrained, type ProgressInfo } from "../sdk/hub";
import { fakeSha, HubServer } from "./helpers/hub-server";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

// ---- fixture repos ------------------------------------------------------------------------

const SHARD1 = randomBytes(300_000);
const SHARD2 = randomBytes(200_000);
const STRAY = randomBytes(1000);
const SINGLE = randomBytes(120_000);
const INDEX = JSON.stringify({
  metadata: { total_size: SHARD1.length + SHARD2.length },
  weight_map: {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors",
  },
});
const CONFIG_NEW = JSON.stringify({ model_type: "llama4", hidden_size: 64 });
const CONFIG_OLD = JSON.stringify({ model_type: "llama4", hidden_size: 32 });
const TOKENIZER = JSON.stringify({ version: "1.0", model: { type: "BPE" } });

const SHARDED = "tiny/sharded";
const NEW = fakeSha("sharded-new");
const OLD = fakeSha("sharded-old");
const SINGLE_ID = "tiny/single";
const SINGLE_SHA = fakeSha("single");
const GATED = "meta-test/gated";
const GATED_SHA = fakeSha("gated");
const GATED_TOKEN = "hf_testTokenForTheLocalServer";

const shardedFiles = (config: string) => ({
  "config.json": config,
  "tokenizer.json": TOKENIZER,
  "README.md": "# tiny sharded\n",
  "model.safetensors.index.json": INDEX,
  "model-00001-of-00002.safetensors": SHARD1,
  "model-00002-of-00002.safetensors": SHARD2,
  "model-00003-of-00003.safetensors": STRAY, // present in the repo, not named by the index
  "pytorch_model.bin": randomBytes(5000),
  "original/consolidated.00.pth": randomBytes(5000),
  "original/params.json": "{}",
});

let server: HubServer;
let DEAD = ""; // a 127.0.0.1 URL where nothing listens (connection refused)
let scratch: string;
let cacheDir: string;
let counter = 0;
const savedEnv: Record<string, string | undefined> = {};
const ENV_KEYS = [
  "HF_HOME",
  "HF_HUB_CACHE",
  "HUGGINGFACE_HUB_CACHE",
  "XDG_CACHE_HOME",
  "HF_TOKEN",
  "HUGGING_FACE_HUB_TOKEN",
  "HF_TOKEN_PATH",
  "HF_HUB_OFFLINE",
  "TRANSFORMERS_OFFLINE",
  "HF_ENDPOINT",
];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "llama4-hub-"));
  server = new HubServer([
    {
      id: SHARDED,
      commits: [
        { sha: OLD, files: shardedFiles(CONFIG_OLD) },
        { sha: NEW, files: shardedFiles(CONFIG_NEW) },
      ],
      refs: { main: NEW, v1: OLD },
    },
    {
      id: SINGLE_ID,
      commits: [{ sha: SINGLE_SHA, files: { "config.json": CONFIG_NEW, "added_tokens.json": "", "model.safetensors": SINGLE, "model.safetensors.index.json": INDEX } }],
      refs: { main: SINGLE_SHA },
    },
    {
      id: GATED,
      commits: [{ sha: GATED_SHA, files: { "config.json": CONFIG_NEW } }],
      refs: { main: GATED_SHA },
      gatedToken: GATED_TOKEN,
    },
  ]);
  await server.start();
  const probe = createServer();
  await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", () => ok()));
  DEAD = `http://127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise<void>((ok) => probe.close(() => ok()));
});

afterAll(async () => {
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

beforeEach(() => {
  for (const k of ENV_KEYS) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  // Every test gets its own empty HF_HOME (so no real token file or cache is ever read) and
  // talks to the local server through HF_ENDPOINT.
  process.env.HF_HOME = join(scratch, `home${counter++}`);
  process.env.HF_ENDPOINT = server.url;
  cacheDir = join(process.env.HF_HOME, "hub");
  server.requests.length = 0;
});

afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

const MODEL = { required: ["config.json"], optional: ["tokenizer.json", "generation_config.json"], weights: true };
const repoDir = (id: string, root = cacheDir) => join(root, `models--${id.replace("/", "--")}`);

// ---- tests --------------------------------------------------------------------------------

describe("download into the standard cache layout", () => {
  test("a sharded repo: exactly config, tokenizer, the index and the shards it names", async () => {
    const events: ProgressInfo[] = [];
    const dir = await resolvePretrained(SHARDED, MODEL, { progress_callback: (e) => events.push(e) });

    const root = repoDir(SHARDED);
    expect(dir).toBe(join(root, "snapshots", NEW));
    expect(new Set(server.resolvedFiles())).toEqual(
      new Set(["config.json", "tokenizer.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    );
    for (const f of server.resolvedFiles()) expect(f).not.toMatch(/pytorch_model|original\/|00003|README/);
    // Only the endpoints the client is meant to use.
    for (const r of server.requests) expect(r.path).toMatch(/^\/(api\/models\/tiny\/sharded\/(revision|paths-info)\/|tiny\/sharded\/resolve\/|lfs-cdn\/)/);

    // refs/main -> commit; snapshot entries are relative symlinks into blobs/<etag>.
    expect(readFileSync(join(root, "refs", "main"), "utf8")).toBe(NEW);
    expect(readdirSync(join(root, "snapshots"))).toEqual([NEW]);
    const expectBlob = (file: string, content: Buffer, etag: string) => {
      const link = join(dir, file);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link).startsWith("../../blobs/")).toBe(true);
      expect(realpathSync(link)).toBe(realpathSync(join(root, "blobs", etag)));
      expect(readFileSync(link).equals(content)).toBe(true);
    };
    expectBlob("config.json", Buffer.from(CONFIG_NEW), gitOid(Buffer.from(CONFIG_NEW)));
    expectBlob("model.safetensors.index.json", Buffer.from(INDEX), gitOid(Buffer.from(INDEX)));
    expectBlob("model-00001-of-00002.safetensors", SHARD1, sha256(SHARD1));
    expectBlob("model-00002-of-00002.safetensors", SHARD2, sha256(SHARD2));
    expect(readdirSync(join(root, "blobs")).sort()).toHaveLength(5);
    expect(readdirSync(join(root, "blobs")).some((b) => b.endsWith(".incomplete"))).toBe(false);
    // Absent optional files are recorded the way huggingface_hub does.
    expect(existsSync(join(root, ".no_exist", NEW, "generation_config.json"))).toBe(true);

    // Progress: download -> progress... -> done for each file, bytes monotonic up to the size.
    const byFile = new Map<string, ProgressInfo[]>();
    for (const e of events) byFile.set(e.file, [...(byFile.get(e.file) ?? []), e]);
    expect(new Set(byFile.keys())).toEqual(new Set(server.resolvedFiles()));
    const shardEvents = byFile.get("model-00001-of-00002.safetensors")!;
    expect(shardEvents[0]).toMatchObject({ status: "download", name: SHARDED, loaded: 0, total: SHARD1.length });
    expect(shardEvents.at(-1)).toMatchObject({ status: "done", loaded: SHARD1.length, total: SHARD1.length });
    const loaded = shardEvents.filter((e) => e.status === "progress").map((e) => e.loaded!);
    expect(loaded.length).toBeGreaterThan(1);
    expect([...loaded].sort((a, b) => a - b)).toEqual(loaded);
    expect(loaded.at(-1)).toBe(SHARD1.length);
  });

  test("a single model.safetensors is preferred over an index", async () => {
    const dir = await resolvePretrained(SINGLE_ID, { required: ["config.json"], optional: ["added_tokens.json"], weights: true }, {});
    expect(new Set(server.resolvedFiles())).toEqual(new Set(["config.json", "model.safetensors"])); // the empty file needs no GET
    expect(readFileSync(join(dir, "model.safetensors")).equals(SINGLE)).toBe(true);
    expect(readFileSync(join(dir, "added_tokens.json"), "utf8")).toBe(""); // an empty file is a file too
  });

  test("a second call is served from the cache", async () => {
    const first = await resolvePretrained(SHARDED, MODEL, {});
    const fetched = server.requests.length;

    // Pinned to the commit sha: no request at all.
    expect(await resolvePretrained(SHARDED, MODEL, { revision: NEW })).toBe(first);
    expect(server.requests.length).toBe(fetched);

    // Offline through the env var, and through local_files_only: no request either.
    process.env.HF_HUB_OFFLINE = "1";
    expect(await resolvePretrained(SHARDED, MODEL, {})).toBe(first);
    delete process.env.HF_HUB_OFFLINE;
    expect(await resolvePretrained(SHARDED, MODEL, { local_files_only: true })).toBe(first);
    expect(server.requests.length).toBe(fetched);

    // Online on a branch: one metadata request to learn the commit, no file downloads.
    expect(await resolvePretrained(SHARDED, MODEL, {})).toBe(first);
    const newer = server.requests.slice(fetched);
    expect(newer.map((r) => r.path)).toEqual([`/api/models/${SHARDED}/revision/main`]);

    // The Hub unreachable: falls back to the cache like transformers does.
    expect(await resolvePretrained(SHARDED, MODEL, { endpoint: DEAD })).toBe(first);
  });

  test("revision pinning: a commit sha and a branch name", async () => {
    const bySha = await resolvePretrained(SHARDED, { required: ["config.json"] }, { revision: OLD });
    expect(bySha).toBe(join(repoDir(SHARDED), "snapshots", OLD));
    expect(readFileSync(join(bySha, "config.json"), "utf8")).toBe(CONFIG_OLD);
    expect(server.resolvedFiles()).toEqual(["config.json"]); // a plain git file: one GET, no probe
    expect(server.requests.every((r) => !r.path.includes("/main"))).toBe(true);
    expect(existsSync(join(repoDir(SHARDED), "refs", OLD))).toBe(false);

    const byBranch = await resolvePretrained(SHARDED, { required: ["config.json"] }, { revision: "v1" });
    expect(byBranch).toBe(bySha);
    expect(readFileSync(join(repoDir(SHARDED), "refs", "v1"), "utf8")).toBe(OLD);

    const latest = await resolvePretrained(SHARDED, { required: ["config.json"] }, {});
    expect(readFileSync(join(latest, "config.json"), "utf8")).toBe(CONFIG_NEW);
  });

  test("cache location: HF_HUB_CACHE over HF_HOME, cache_dir over both; endpoint option over HF_ENDPOINT", async () => {
    const hubCache = join(scratch, `hubcache${counter++}`);
    process.env.HF_HUB_CACHE = hubCache;
    const a = await resolvePretrained(SINGLE_ID, { required: ["config.json"] }, {});
    expect(a.startsWith(repoDir(SINGLE_ID, hubCache))).toBe(true);

    const explicit = join(scratch, `explicit${counter++}`);
    process.env.HF_ENDPOINT = DEAD;
    const b = await resolvePretrained(SINGLE_ID, { required: ["config.json"] }, { cache_dir: explicit, endpoint: server.url });
    expect(b.startsWith(repoDir(SINGLE_ID, explicit))).toBe(true);
    expect(existsSync(cacheDir)).toBe(false); // HF_HOME/hub untouched
  });
});

describe("auth", () => {
  test("a gated repo without a token is a 401 that says so", async () => {
    const err = await resolvePretrained(GATED, { required: ["config.json"] }, {}).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.code).toBe("access_denied");
    expect(err.status).toBe(401);
    expect(err.message).toContain(GATED);
    expect(err.message).toMatch(/gated/);
    expect(err.message).toMatch(/HF_TOKEN/);
    expect(existsSync(join(repoDir(GATED), "snapshots"))).toBe(false);

    const wrong = await resolvePretrained(GATED, { required: ["config.json"] }, { token: "hf_wrong" }).catch((e) => e);
    expect(wrong.message).toMatch(/token that was sent was refused/);
  });

  test("HF_TOKEN is sent as a Bearer token", async () => {
    process.env.HF_TOKEN = GATED_TOKEN;
    const dir = await resolvePretrained(GATED, { required: ["config.json"] }, {});
    expect(readFileSync(join(dir, "config.json"), "utf8")).toBe(CONFIG_NEW);
    expect(server.requests.length).toBeGreaterThan(0);
    for (const r of server.requests) expect(r.headers.authorization).toBe(`Bearer ${GATED_TOKEN}`);
  });

  test("options.token and the login token file work too", async () => {
    const dir = await resolvePretrained(GATED, { required: ["config.json"] }, { token: GATED_TOKEN });
    expect(existsSync(join(dir, "config.json"))).toBe(true);

    mkdirSync(process.env.HF_HOME!, { recursive: true });
    writeFileSync(join(process.env.HF_HOME!, "token"), GATED_TOKEN + "\n");
    const other = join(scratch, `tokfile${counter++}`);
    const dir2 = await resolvePretrained(GATED, { required: ["config.json"] }, { cache_dir: other });
    expect(existsSync(join(dir2, "config.json"))).toBe(true);
  });
});

describe("errors", () => {
  test("404s: missing repo, revision, required file; a missing optional file is skipped", async () => {
    const repo = await resolvePretrained("tiny/nope", MODEL, {}).catch((e) => e);
    expect(repo).toMatchObject({ code: "repo_not_found", status: 404 });
    expect(repo.message).toMatch(/tiny\/nope.*not found/);

    const rev = await resolvePretrained(SHARDED, MODEL, { revision: "no-such-branch" }).catch((e) => e);
    expect(rev).toMatchObject({ code: "revision_not_found", status: 404 });
    expect(rev.message).toContain("no-such-branch");

    const file = await resolvePretrained(SHARDED, { required: ["config.json", "preprocessor_config.json"] }, {}).catch((e) => e);
    expect(file).toMatchObject({ code: "file_not_found", file: "preprocessor_config.json" });
    expect(file.message).toContain("preprocessor_config.json");
    expect(file.message).toContain(SHARDED);

    const dir = await resolvePretrained(SHARDED, { required: ["config.json"], optional: ["preprocessor_config.json"] }, {});
    expect(existsSync(join(dir, "config.json"))).toBe(true);
    expect(existsSync(join(dir, "preprocessor_config.json"))).toBe(false);
  });

  test("offline with nothing cached names the id and says it is not in the cache", async () => {
    process.env.HF_HUB_OFFLINE = "1";
    const err = await resolvePretrained(SHARDED, MODEL, {}).catch((e) => e);
    expect(err).toMatchObject({ code: "not_in_cache" });
    expect(err.message).toContain(SHARDED);
    expect(err.message).toMatch(/not in the cache/);
    expect(server.requests).toHaveLength(0);

    delete process.env.HF_HUB_OFFLINE;
    await resolvePretrained(SHARDED, { required: ["config.json"] }, {});
    // Cached config, but not the weights: offline names the missing file.
    const partial = await resolvePretrained(SHARDED, MODEL, { local_files_only: true }).catch((e) => e);
    expect(partial.message).toMatch(/model\.safetensors.*not in the cache/);
  });

  test("the Hub unreachable and nothing cached: a connection error naming the id", async () => {
    const err = await resolvePretrained(SHARDED, MODEL, { endpoint: DEAD }).catch((e) => e);
    expect(err).toMatchObject({ code: "connection" });
    expect(err.message).toMatch(/cannot be reached \(.*ECONNREFUSED/);
    expect(err.message).toContain(SHARDED);
  });

  test("a connection dropped mid-file keeps the .incomplete; the next call resumes with a Range request", async () => {
    const shard = "model-00001-of-00002.safetensors";
    server.dropAfter(SHARDED, shard, 100_000);
    const err = await resolvePretrained(SHARDED, MODEL, {}).catch((e) => e);
    expect(err).toMatchObject({ code: "interrupted", file: shard });
    expect(err.message).toContain(shard);

    const blob = join(repoDir(SHARDED), "blobs", sha256(SHARD1));
    expect(existsSync(blob)).toBe(false);
    expect(statSync(`${blob}.incomplete`).size).toBe(100_000);
    expect(existsSync(join(repoDir(SHARDED), "snapshots", NEW, shard))).toBe(false);
    // The other files finished.
    expect(readFileSync(join(repoDir(SHARDED), "snapshots", NEW, "model-00002-of-00002.safetensors")).equals(SHARD2)).toBe(true);

    server.requests.length = 0;
    const events: ProgressInfo[] = [];
    const dir = await resolvePretrained(SHARDED, MODEL, { progress_callback: (e) => events.push(e) });
    const ranged = server.requests.filter((r) => r.headers.range && r.headers.range !== "bytes=0-0");
    expect(ranged.map((r) => r.headers.range)).toEqual(["bytes=100000-"]);
    expect(ranged[0].path).toBe(`/lfs-cdn/${sha256(SHARD1)}`);
    expect(server.resolvedFiles()).toEqual([shard]); // nothing else downloaded again
    expect(events[0]).toMatchObject({ status: "download", file: shard, loaded: 100_000, resumed_from: 100_000 });
    expect(readFileSync(join(dir, shard)).equals(SHARD1)).toBe(true);
    expect(existsSync(`${blob}.incomplete`)).toBe(false);
  });

  test("a corrupted file fails the sha256 check and leaves nothing that looks complete", async () => {
    const shard = "model-00002-of-00002.safetensors";
    server.corrupt(SHARDED, shard);
    try {
      const err = await resolvePretrained(SHARDED, MODEL, {}).catch((e) => e);
      expect(err).toMatchObject({ code: "checksum", file: shard });
      expect(err.message).toContain(shard);
      expect(err.message).toContain(sha256(SHARD2)); // expected
      const bad = Buffer.from(SHARD2);
      for (let i = 0; i < bad.length; i += 997) bad[i] ^= 0xff;
      expect(err.message).toContain(sha256(bad)); // got
      const blob = join(repoDir(SHARDED), "blobs", sha256(SHARD2));
      expect(existsSync(blob)).toBe(false);
      expect(existsSync(`${blob}.incomplete`)).toBe(false);
      expect(existsSync(join(repoDir(SHARDED), "snapshots", NEW, shard))).toBe(false);
    } finally {
      server.corrupt(SHARDED, shard, false);
    }
    const dir = await resolvePretrained(SHARDED, MODEL, {});
    expect(readFileSync(join(dir, shard)).equals(SHARD2)).toBe(true);
  });

  test("a corrupted partial file is caught after a resume too", async () => {
    const blobs = join(repoDir(SINGLE_ID), "blobs");
    mkdirSync(blobs, { recursive: true });
    const partial = Buffer.from(SINGLE.subarray(0, 50_000));
    partial[10] ^= 1;
    writeFileSync(join(blobs, `${sha256(SINGLE)}.incomplete`), partial);
    const err = await resolvePretrained(SINGLE_ID, { required: ["config.json"], weights: true }, {}).catch((e) => e);
    expect(err).toMatchObject({ code: "checksum", file: "model.safetensors" });
    expect(existsSync(join(blobs, `${sha256(SINGLE)}.incomplete`))).toBe(false);
    const dir = await resolvePretrained(SINGLE_ID, { required: ["config.json"], weights: true }, {});
    expect(readFileSync(join(dir, "model.safetensors")).equals(SINGLE)).toBe(true);
  });
});

describe("concurrency and odd servers", () => {
  test("two calls at once share each download", async () => {
    const [a, b] = await Promise.all([resolvePretrained(SHARDED, MODEL, {}), resolvePretrained(SHARDED, MODEL, {})]);
    expect(a).toBe(b);
    const shardGets = server.requests.filter((r) => r.path.startsWith("/lfs-cdn/") && r.headers.range !== "bytes=0-0");
    expect(shardGets).toHaveLength(2); // one per shard, not one per call
    expect(readFileSync(join(a, "model-00001-of-00002.safetensors")).equals(SHARD1)).toBe(true);
  });

  test("a server that ignores Range restarts the file from scratch", async () => {
    const blobs = join(repoDir(SINGLE_ID), "blobs");
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${sha256(SINGLE)}.incomplete`), SINGLE.subarray(0, 40_000));
    server.ignoreRanges = true;
    try {
      const dir = await resolvePretrained(SINGLE_ID, { required: ["config.json"], weights: true }, {});
      expect(server.requests.some((r) => r.headers.range === "bytes=40000-")).toBe(true);
      expect(readFileSync(join(dir, "model.safetensors")).equals(SINGLE)).toBe(true);
    } finally {
      server.ignoreRanges = false;
    }
  });
});

describe("local directories", () => {
  test("an existing directory is used as is, checking the required files", async () => {
    const local = join(scratch, `local${counter++}`);
    mkdirSync(local);
    writeFileSync(join(local, "config.json"), CONFIG_NEW);
    expect(await resolvePretrained(local, { required: ["config.json"] }, {})).toBe(local);
    await expect(resolvePretrained(local, { required: ["tokenizer.json"] }, {})).rejects.toThrow(/missing tokenizer\.json/);
    expect(server.requests).toHaveLength(0);
  });

  test("neither a directory nor a model id", async () => {
    await expect(resolvePretrained("./no/such/dir", { required: [] }, {})).rejects.toThrow(/not a local directory/);
    await expect(resolvePretrained("", { required: [] }, {})).rejects.toThrow(/model id or a directory/);
  });
});
