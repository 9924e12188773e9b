// One file from the Hub into the cache: <blob>.incomplete, resumed with a Range request when a
// previous run was cut off, verified, then renamed to the blob and linked from the snapshot.
//
// Why not @huggingface/hub's downloadFileToCacheDir: it names the snapshot folder after the last
// commit that touched each file (not the revision's commit), writes no refs/, cannot resume (it
// always restarts the .incomplete file), verifies nothing and reports no progress. We still use the
// library for the metadata and the transfer decision: fileDownloadInfo (the resolve-URL probe
// that follows redirects and detects Xet storage) and downloadFile for Xet-backed files. For
// plain HTTP we issue the GET ourselves because WebBlob.stream() hides the response status
// (we must tell a 206 resume from a 200 restart) and turns errors into bare strings.
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { FileDownloadInfoOutput } from "@huggingface/hub";

import type { RepoCache } from "./cache";
import { describeCause, HubError } from "./errors";
import { hubLib } from "../utils/lazy_modules";
import type { ProgressInfo } from "./index";

/** What the Hub's paths-info said about a file at the resolved commit. */
export interface RemoteFile {
  path: string;
  size: number;
  /** Cache blob name: the LFS sha256, else the git blob oid (else the Xet hash). */
  etag: string;
  /** Expected sha256 of the content (LFS files). */
  sha256?: string;
  /** Expected git blob sha1 of the content (regular git files). */
  gitOid?: string;
  /** The Hub lists a Xet hash for it. */
  xet?: boolean;
}

export function resolveUrl(ctx: { endpoint: string; repoId: string; commit: string }, path: string): string {
  const file = path.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(ctx.commit)}/${file}`;
}

export interface DownloadContext {
  repoId: string;
  commit: string;
  cache: RepoCache;
  endpoint: string;
  token?: string;
  fetch: typeof fetch;
  progress?: (info: ProgressInfo) => void;
  /** Turns a library/HTTP error into a HubError naming the repo (and file). */
  wrap(err: unknown, file?: string): Error;
}

// Two from_pretrained calls in one process (say a tokenizer and a model loaded together) must not
// write the same .incomplete file at once: they share the one in-flight download instead.
const inFlight = new Map<string, Promise<void>>();

export async function ensureFile(ctx: DownloadContext, file: RemoteFile): Promise<void> {
  if (ctx.cache.hasFile(ctx.commit, file.path)) return;
  const blob = ctx.cache.blobPath(file.etag);
  let pending = inFlight.get(blob);
  if (!pending) {
    pending = fetchBlob(ctx, file, blob).finally(() => inFlight.delete(blob));
    inFlight.set(blob, pending);
  }
  await pending;
  await ctx.cache.link(ctx.commit, file.path, file.etag);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function newHasher(file: RemoteFile): { hash: Hash; kind: "sha256" | "git-sha1" } | undefined {
  if (file.sha256) return { hash: createHash("sha256"), kind: "sha256" };
  if (file.gitOid) {
    // A git blob id is sha1("blob <size>\0" + content).
    const hash = createHash("sha1");
    hash.update(`blob ${file.size}\0`);
    return { hash, kind: "git-sha1" };
  }
  return undefined;
}

async function hashExisting(hash: Hash, path: string): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function fetchBlob(ctx: DownloadContext, file: RemoteFile, blob: string): Promise<void> {
  if (await exists(blob)) return;
  await mkdir(dirname(blob), { recursive: true });
  const incomplete = `${blob}.incomplete`;
  const { repoId } = ctx;
  const total = file.size;

  let offset = await sizeOf(incomplete);
  if (offset > total) {
    await rm(incomplete, { force: true });
    offset = 0;
  }

  let hasher = newHasher(file);
  if (hasher && offset > 0) await hashExisting(hasher.hash, incomplete);

  const emit = (status: ProgressInfo["status"], loaded: number, extra: Partial<ProgressInfo> = {}) => {
    ctx.progress?.({ status, name: repoId, file: file.path, loaded, total, ...extra });
  };

  if (offset < total) {
    let info: FileDownloadInfoOutput | null;
    if (file.sha256 || file.xet) {
      // LFS/Xet content lives behind a redirect or in Xet storage: let the library probe it.
      try {
        info = await hubLib().fileDownloadInfo({
          repo: { type: "model", name: repoId },
          path: file.path,
          revision: ctx.commit,
          hubUrl: ctx.endpoint,
          accessToken: ctx.token,
          fetch: ctx.fetch,
        });
      } catch (err) {
        throw ctx.wrap(err, file.path);
      }
      if (!info) {
        throw new HubError("file_not_found", `${repoId}: ${file.path} not found at commit ${ctx.commit} (HTTP 404)`, {
          repo_id: repoId,
          file: file.path,
          status: 404,
        });
      }
    } else {
      // A plain git file is served by the resolve URL itself: no probe round trip needed.
      info = { url: resolveUrl(ctx, file.path), size: total, etag: file.etag };
    }

    emit("download", offset, offset > 0 ? { resumed_from: offset } : {});

    const { body, restart } = await openBody(ctx, file, info, offset);
    if (restart) {
      // The server ignored the Range header and is sending the whole file: start over.
      await truncate(incomplete, 0).catch(() => undefined);
      offset = 0;
      hasher = newHasher(file);
    }

    const fh = await open(incomplete, offset > 0 ? "a" : "w");
    let loaded = offset;
    let lastEmitted = loaded;
    const step = Math.max(64 * 1024, Math.floor(total / 100));
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        if (loaded + chunk.byteLength > total) {
          throw new HubError("checksum", `${repoId}: ${file.path} is longer than the ${total} bytes the Hub announced`, {
            repo_id: repoId,
            file: file.path,
          });
        }
        await fh.write(chunk);
        hasher?.hash.update(chunk);
        loaded += chunk.byteLength;
        if (loaded - lastEmitted >= step && loaded < total) {
          lastEmitted = loaded;
          emit("progress", loaded);
        }
      }
    } catch (err) {
      await fh.close().catch(() => undefined);
      if (err instanceof HubError && err.code === "checksum") {
        await rm(incomplete, { force: true });
        throw err;
      }
      throw interrupted(ctx, file, loaded, incomplete, err);
    }
    await fh.close();
    if (loaded < total) throw interrupted(ctx, file, loaded, incomplete, new Error("the response ended early"));
    emit("progress", loaded);
  } else {
    // Nothing left to fetch: an empty file, or a partial file that was already whole.
    if (total === 0) await writeFile(incomplete, "");
    emit("download", offset, offset > 0 ? { resumed_from: offset } : {});
    emit("progress", offset);
  }

  if (hasher) {
    const got = hasher.hash.digest("hex");
    const expected = hasher.kind === "sha256" ? file.sha256! : file.gitOid!;
    if (got !== expected) {
      await rm(incomplete, { force: true });
      throw new HubError(
        "checksum",
        `${repoId}: ${file.path} is corrupted: expected ${hasher.kind} ${expected}, got ${got}. ` +
          `The bad download was deleted; call again to download it afresh.`,
        { repo_id: repoId, file: file.path },
      );
    }
  }
  await rename(incomplete, blob);
  emit("done", total);
}

function interrupted(ctx: DownloadContext, file: RemoteFile, loaded: number, incomplete: string, cause: unknown): HubError {
  return new HubError(
    "interrupted",
    `${ctx.repoId}: download of ${file.path} was interrupted after ${loaded} of ${file.size} bytes (${describeCause(cause)}). ` +
      `The partial file ${incomplete} is kept; call again to resume.`,
    { repo_id: ctx.repoId, file: file.path, cause },
  );
}

async function openBody(
  ctx: DownloadContext,
  file: RemoteFile,
  info: FileDownloadInfoOutput,
  offset: number,
): Promise<{ body: AsyncIterable<Uint8Array>; restart: boolean }> {
  if (info.xet) {
    // Xet-backed storage (huggingface.co): the library reassembles the bytes; slice() makes it
    // fetch from `offset` on, which is how a resume works there.
    try {
      const blob = await hubLib().downloadFile({
        repo: { type: "model", name: ctx.repoId },
        path: file.path,
        revision: ctx.commit,
        hubUrl: ctx.endpoint,
        accessToken: ctx.token,
        fetch: ctx.fetch,
        downloadInfo: info,
      });
      if (!blob) throw new Error(`no content returned for ${file.path}`);
      const stream = (offset > 0 ? blob.slice(offset) : blob).stream();
      return { body: stream as unknown as AsyncIterable<Uint8Array>, restart: false };
    } catch (err) {
      throw ctx.wrap(err, file.path);
    }
  }

  const headers: Record<string, string> = { "Accept-Encoding": "identity" };
  if (ctx.token) headers.Authorization = `Bearer ${ctx.token}`;
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  let resp: Response;
  try {
    resp = await ctx.fetch(info.url, { headers });
  } catch (err) {
    throw new HubError("connection", `${ctx.repoId}: could not download ${file.path} from ${ctx.endpoint} (${describeCause(err)})`, {
      repo_id: ctx.repoId,
      file: file.path,
      cause: err,
    });
  }
  if (!resp.ok || !resp.body) {
    await resp.body?.cancel().catch(() => undefined);
    // Same error mapping as the library's calls (401 -> gated/token, 404 -> not found).
    throw ctx.wrap(new (hubLib().HubApiError)(resp.url || info.url, resp.status, undefined, `HTTP ${resp.status}`), file.path);
  }
  if (offset > 0 && resp.status === 206) {
    const start = /^bytes (\d+)-/.exec(resp.headers.get("content-range") ?? "")?.[1];
    if (start !== undefined && Number(start) !== offset) {
      await resp.body.cancel().catch(() => undefined);
      throw new HubError("http", `${ctx.repoId}: resuming ${file.path} at byte ${offset}, the server answered from byte ${start}`, {
        repo_id: ctx.repoId,
        file: file.path,
        status: 206,
      });
    }
  }
  return { body: resp.body as unknown as AsyncIterable<Uint8Array>, restart: offset > 0 && resp.status === 200 };
}
