// Where from_pretrained finds its files: a local directory, or a Hub repo downloaded into the
// standard Hugging Face cache (see cache.ts for the layout, download.ts for resume/verification).
//
// Metadata comes from @huggingface/hub: modelInfo (revision -> commit sha) and pathsInfo (which of
// the requested paths exist at that commit, with their size, git oid and LFS sha256). Only the
// requested files are ever fetched: no tree listing, no snapshot of the whole repo.
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

import { checkRelativePath, COMMIT_RE, hubCacheDir, hubEndpoint, hubToken, isOfflineFromEnv, RepoCache } from "./cache";
import { ensureFile, type DownloadContext, type RemoteFile } from "./download";
import { describeCause, HubError, isConnectionError } from "./errors";
import { readTextFile } from "../utils/files";
import { hubLib } from "../utils/lazy_modules";

export { HubError, type HubErrorCode } from "./errors";

export interface ProgressInfo {
  /**
   * "download": a file transfer starts; "progress": bytes arrived; "done": verified and in the cache.
   * "loading": from_pretrained's engine has loaded (converted, quantized) `loaded` of the `total` bytes of the
   * text model's tensors, reported after each decoder layer; `file` is "weights".
   */
  status: "download" | "progress" | "done" | "loading";
  file: string;
  /** The repo id the file belongs to. */
  name?: string;
  /** Bytes of `file` on disk so far (counting a resumed partial file). */
  loaded?: number;
  /** Size of `file` in bytes. */
  total?: number;
  /** On "download": the byte offset a resumed transfer continues from. */
  resumed_from?: number;
}

/** The Hub options of transformers' from_pretrained. */
export interface PretrainedOptions {
  /** Branch, tag or full 40-hex commit sha. Default "main". */
  revision?: string;
  /** The hub cache directory itself (what HF_HUB_CACHE names). Default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub. */
  cache_dir?: string;
  /** Bearer token. Default: HF_TOKEN, then the token file of `hf auth login`. "" sends none. */
  token?: string;
  /** Resolve from the cache only, as HF_HUB_OFFLINE=1 does. */
  local_files_only?: boolean;
  progress_callback?: (info: ProgressInfo) => void;
  /** Hub base URL. Default: HF_ENDPOINT, then https://huggingface.co. */
  endpoint?: string;
  /** fetch implementation for Hub requests (proxies, tests). Default: global fetch. */
  fetch?: typeof fetch;
  /** Files downloaded at once. Default 4. */
  max_workers?: number;
}

/** The option names above, for option checking in from_pretrained and pipeline(). */
export const HUB_OPTION_KEYS = ["revision", "cache_dir", "token", "local_files_only", "progress_callback", "endpoint", "fetch",
  "max_workers"] as const;

/** Just the Hub options of a larger options object. */
export function hubOptionsOf(options: object): PretrainedOptions {
  return Object.fromEntries(Object.entries(options).filter(([k]) => (HUB_OPTION_KEYS as readonly string[]).includes(k)));
}

export interface FileRequest {
  /** Files that must exist (e.g. "config.json", "tokenizer.json"). */
  required: string[];
  /** Files fetched if the repo has them. */
  optional?: string[];
  /** Also the safetensors weights: model.safetensors, or the index and every shard it names. */
  weights?: boolean;
}

export const SAFE_WEIGHTS_NAME = "model.safetensors";
export const SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json";

// Hub repo ids: "name" or "org/name", letters, digits, '-', '_', '.', no "--" or "..".
const REPO_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

export function isRepoId(s: string): boolean {
  return REPO_ID_RE.test(s) && !s.includes("--") && !s.includes("..") && s.length <= 96;
}

/** Returns a local directory holding the requested files of `idOrPath`. */
export async function resolvePretrained(idOrPath: string, request: FileRequest, options: PretrainedOptions = {}): Promise<string> {
  if (typeof idOrPath !== "string" || idOrPath.length === 0) throw new Error("from_pretrained expects a model id or a directory path");
  const dir = resolve(idOrPath);
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    for (const file of request.required) {
      if (!existsSync(join(dir, file))) throw new Error(`${dir}: missing ${file}`);
    }
    return dir;
  }
  if (!isRepoId(idOrPath)) {
    throw new HubError("invalid_id", `${idOrPath}: not a local directory, nor a Hub model id of the form "org/name"`, { repo_id: idOrPath });
  }
  return resolveFromHub(idOrPath, request, options);
}

/** Reads the shard names of an index file: the distinct values of its weight_map. */
export function shardsOfIndex(indexPath: string, repoId: string): string[] {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(readTextFile(indexPath)) as { weight_map?: unknown }).weight_map;
  } catch (err) {
    throw new Error(`${repoId}: cannot read ${SAFE_WEIGHTS_INDEX_NAME} (${describeCause(err)})`);
  }
  if (!weightMap || typeof weightMap !== "object" || Array.isArray(weightMap)) {
    throw new Error(`${repoId}: ${SAFE_WEIGHTS_INDEX_NAME} has no weight_map object`);
  }
  const shards = [...new Set(Object.values(weightMap as Record<string, unknown>))];
  for (const shard of shards) {
    if (typeof shard !== "string") throw new Error(`${repoId}: ${SAFE_WEIGHTS_INDEX_NAME} maps a tensor to a non-string shard`);
    checkRelativePath(shard, `${repoId}: ${SAFE_WEIGHTS_INDEX_NAME} shard`);
  }
  return shards as string[];
}

type CacheCheck = { ok: true } | { ok: false; missing: string };

/**
 * Whether snapshots/<commit> already satisfies `request`. `strict` (used before going online)
 * also wants an answer for every optional file (present, or recorded in .no_exist) and for the
 * choice between model.safetensors and the index; offline resolution takes what is there.
 */
function checkCache(cache: RepoCache, commit: string, request: FileRequest, strict: boolean): CacheCheck {
  if (!existsSync(cache.snapshotDir(commit))) return { ok: false, missing: "" };
  for (const file of request.required) if (!cache.hasFile(commit, file)) return { ok: false, missing: file };
  if (strict) {
    for (const file of request.optional ?? []) {
      if (!cache.hasFile(commit, file) && !cache.knownMissing(commit, file)) return { ok: false, missing: file };
    }
  }
  if (request.weights && !cache.hasFile(commit, SAFE_WEIGHTS_NAME)) {
    if (strict && !cache.knownMissing(commit, SAFE_WEIGHTS_NAME)) return { ok: false, missing: SAFE_WEIGHTS_NAME };
    if (!cache.hasFile(commit, SAFE_WEIGHTS_INDEX_NAME)) return { ok: false, missing: `${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME}` };
    let shards: string[];
    try {
      shards = shardsOfIndex(cache.pointerPath(commit, SAFE_WEIGHTS_INDEX_NAME), cache.repoId);
    } catch {
      return { ok: false, missing: SAFE_WEIGHTS_INDEX_NAME };
    }
    for (const shard of shards) if (!cache.hasFile(commit, shard)) return { ok: false, missing: shard };
  }
  return { ok: true };
}

/** Resolution from the cache alone; `why` says why the network is not used, for the error. */
function fromCache(cache: RepoCache, revision: string, request: FileRequest, why: string): string {
  const id = cache.repoId;
  const commit = cache.commitFor(revision);
  if (!commit || !existsSync(cache.snapshotDir(commit))) {
    throw new HubError(
      "not_in_cache",
      `${id} is not in the cache (no revision "${revision}" under ${cache.folder}) and ${why}. ` +
        `Download it once online, or point cache_dir / HF_HUB_CACHE / HF_HOME at a cache that has it.`,
      { repo_id: id },
    );
  }
  const check = checkCache(cache, commit, request, false);
  if (!check.ok) {
    throw new HubError(
      "not_in_cache",
      `${id}: ${check.missing} is not in the cache (snapshot ${commit} of revision "${revision}") and ${why}.`,
      { repo_id: id, file: check.missing },
    );
  }
  return cache.snapshotDir(commit);
}

function toRemote(info: { path: string; size: number; oid?: string; lfs?: { oid: string; size: number }; xetHash?: string }): RemoteFile {
  if (info.lfs) {
    const sha = /^[0-9a-f]{64}$/.test(info.lfs.oid) ? info.lfs.oid : undefined;
    return { path: info.path, size: info.lfs.size, etag: info.lfs.oid, sha256: sha, xet: !!info.xetHash };
  }
  const etag = info.oid ?? info.xetHash;
  if (!etag) throw new Error(`${info.path}: the Hub gave no oid for it`);
  // A Xet-only entry's oid is that of its pointer, not of the content: nothing to verify it against.
  const gitOid = !info.xetHash && info.oid && /^[0-9a-f]{40}$/.test(info.oid) ? info.oid : undefined;
  return { path: info.path, size: info.size, etag, gitOid, xet: !!info.xetHash };
}

async function runPool<T>(items: T[], workers: number, fn: (item: T) => Promise<void>): Promise<void> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(workers, items.length)) }, worker));
  if (errors.length > 0) throw errors[0];
}

async function resolveFromHub(id: string, request: FileRequest, options: PretrainedOptions): Promise<string> {
  const revision = options.revision ?? "main";
  checkRelativePath(revision, `${id}: revision`);
  for (const file of [...request.required, ...(request.optional ?? [])]) checkRelativePath(file, `${id}: requested file`);
  const cache = new RepoCache(hubCacheDir(options.cache_dir), id);

  if (options.local_files_only || isOfflineFromEnv()) {
    const why = options.local_files_only ? "local_files_only is set" : "HF_HUB_OFFLINE is set";
    return fromCache(cache, revision, request, why);
  }

  // A commit sha never moves: when its snapshot already has everything, skip the network entirely.
  if (COMMIT_RE.test(revision) && checkCache(cache, revision, request, true).ok) return cache.snapshotDir(revision);

  const endpoint = hubEndpoint(options.endpoint);
  const token = hubToken(options.token);
  const baseFetch = options.fetch ?? globalThis.fetch;
  // HubApiError keeps the status but not X-Error-Code (RepoNotFound, RevisionNotFound,
  // EntryNotFound, GatedRepo), which is what tells those 401/404s apart: note it per URL.
  const errorCodes = new Map<string, string>();
  const recordingFetch: typeof fetch = async (input, init) => {
    const resp = await baseFetch(input, init);
    if (!resp.ok) {
      const code = resp.headers.get("x-error-code");
      if (code) errorCodes.set(resp.url || String(input), code);
    }
    return resp;
  };

  const wrap = (err: unknown, file?: string): Error => {
    if (err instanceof HubError) return err;
    if (err instanceof hubLib().HubApiError) {
      const status = err.statusCode;
      const code = errorCodes.get(err.url);
      const where = file ? `${file} in ${id}` : id;
      if (status === 401 || status === 403) {
        const reason =
          code === "GatedRepo"
            ? `${id} is a gated repo: accept its conditions on the Hub, then`
            : code === "RepoNotFound"
              ? `${id} does not exist, or it is private or gated: if you have access,`
              : `${id} is private or gated, or the token was refused:`;
        return new HubError(
          "access_denied",
          `Access denied to ${where} (HTTP ${status}${code ? ` ${code}` : ""}). ${reason} pass a token with access ` +
            `(options.token or the HF_TOKEN environment variable)${token ? "; the token that was sent was refused" : "; no token was sent"}.`,
          { repo_id: id, file, status, cause: err },
        );
      }
      if (status === 404) {
        if (code === "RevisionNotFound")
          return new HubError("revision_not_found", `${id} has no revision "${revision}" (HTTP 404 from ${endpoint})`, { repo_id: id, status, cause: err });
        if (code === "EntryNotFound" || file)
          return new HubError("file_not_found", `${where} not found at revision "${revision}" (HTTP 404)`, { repo_id: id, file, status, cause: err });
        return new HubError(
          "repo_not_found",
          code === "RepoNotFound"
            ? `Repository ${id} not found on ${endpoint} (HTTP 404)`
            : `Repository ${id} or its revision "${revision}" not found on ${endpoint} (HTTP 404)`,
          { repo_id: id, status, cause: err },
        );
      }
      return new HubError("http", `${where}: Hub request failed with HTTP ${status}: ${err.message}`, { repo_id: id, file, status, cause: err });
    }
    if (isConnectionError(err)) {
      return new HubError("connection", `${id}: cannot reach ${endpoint} (${describeCause(err)})`, { repo_id: id, file, cause: err });
    }
    return err instanceof Error ? err : new Error(String(err));
  };

  const repo = { type: "model" as const, name: id };
  const common = { hubUrl: endpoint, accessToken: token, fetch: recordingFetch };

  let commit: string;
  try {
    const info = await hubLib().modelInfo({ name: id, revision, additionalFields: ["sha"], ...common });
    commit = String((info as { sha?: unknown }).sha ?? "");
  } catch (err) {
    const wrapped = wrap(err);
    if (wrapped instanceof HubError && wrapped.code === "connection") {
      // Like transformers: with the Hub unreachable, fall back to what the cache has.
      try {
        return fromCache(cache, revision, request, `${endpoint} cannot be reached (${describeCause(err)})`);
      } catch (cacheErr) {
        throw new HubError("connection", (cacheErr as Error).message, { repo_id: id, cause: err });
      }
    }
    throw wrapped;
  }
  if (!COMMIT_RE.test(commit)) throw new HubError("http", `${id}: the Hub gave no commit sha for revision "${revision}"`, { repo_id: id });
  await cache.writeRef(revision, commit);
  if (checkCache(cache, commit, request, true).ok) return cache.snapshotDir(commit);

  const ctx: DownloadContext = {
    repoId: id,
    commit,
    cache,
    endpoint,
    token,
    fetch: recordingFetch,
    progress: options.progress_callback,
    wrap,
  };

  const describe = async (paths: string[]): Promise<Map<string, RemoteFile>> => {
    const found = new Map<string, RemoteFile>();
    if (paths.length === 0) return found;
    let infos;
    try {
      infos = await hubLib().pathsInfo({ repo, paths, revision: commit, ...common });
    } catch (err) {
      throw wrap(err);
    }
    for (const info of infos) if (info.type === "file") found.set(info.path, toRemote(info));
    return found;
  };

  const optional = (request.optional ?? []).filter((f) => !request.required.includes(f));
  const candidates = [...new Set([...request.required, ...optional, ...(request.weights ? [SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME] : [])])];
  const remote = await describe(candidates);

  const wanted: RemoteFile[] = [];
  const notFound = (file: string, extra = "") =>
    new HubError("file_not_found", `${id} has no ${file} at revision "${revision}" (commit ${commit})${extra}`, { repo_id: id, file, status: 404 });
  for (const file of [...new Set(request.required)]) {
    const info = remote.get(file);
    if (!info) throw notFound(file);
    wanted.push(info);
  }
  for (const file of optional) {
    const info = remote.get(file);
    if (info) wanted.push(info);
    else await cache.markMissing(commit, file);
  }

  if (request.weights) {
    const single = remote.get(SAFE_WEIGHTS_NAME);
    const index = remote.get(SAFE_WEIGHTS_INDEX_NAME);
    if (single) {
      wanted.push(single);
    } else if (index) {
      await cache.markMissing(commit, SAFE_WEIGHTS_NAME);
      await ensureFile(ctx, index);
      const shards = shardsOfIndex(cache.pointerPath(commit, SAFE_WEIGHTS_INDEX_NAME), id);
      const shardInfo = await describe(shards);
      for (const shard of shards) {
        const info = shardInfo.get(shard);
        if (!info) throw notFound(shard, `, although ${SAFE_WEIGHTS_INDEX_NAME} names it`);
        wanted.push(info);
      }
    } else {
      throw notFound(`${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME}`, " (only safetensors weights are loaded)");
    }
  }

  const unique = [...new Map(wanted.map((f) => [f.path, f])).values()];
  await runPool(unique, options.max_workers ?? 4, (file) => ensureFile(ctx, file));
  return cache.snapshotDir(commit);
}
