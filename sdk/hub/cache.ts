// The standard Hugging Face cache layout, shared with huggingface_hub (Python) and transformers:
//
//   <hub cache>/models--<org>--<name>/
//     blobs/<etag>                    file contents; etag = sha256 for LFS files, git blob sha1 otherwise
//     snapshots/<commit>/<file>       relative symlinks into ../../blobs (copies where symlinks fail)
//     refs/<revision>                 the commit a branch or tag pointed to when last resolved
//     .no_exist/<commit>/<file>       empty markers: the repo has no such file at that commit
//
// The hub cache directory itself comes from @huggingface/hub's getHFHubCachePath() (HF_HUB_CACHE,
// then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub, then ~/.cache/huggingface/hub).
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { readTextFile } from "../utils/files";
import { hubLib } from "../utils/lazy_modules";

export const COMMIT_RE = /^[0-9a-f]{40}$/;

const TRUE_VALUES = new Set(["1", "on", "yes", "true"]);

function envFlag(name: string): boolean {
  const v = process.env[name];
  return v !== undefined && TRUE_VALUES.has(v.trim().toLowerCase());
}

/** HF_HUB_OFFLINE (or transformers' TRANSFORMERS_OFFLINE) set to 1/true/yes/on. */
export function isOfflineFromEnv(): boolean {
  return envFlag("HF_HUB_OFFLINE") || envFlag("TRANSFORMERS_OFFLINE");
}

export function hubCacheDir(cacheDir?: string): string {
  return resolve(cacheDir ?? hubLib().getHFHubCachePath());
}

export function repoFolder(cacheDir: string, repoId: string): string {
  return join(cacheDir, hubLib().getRepoFolderName({ type: "model", name: repoId }));
}

/** The endpoint: explicit option, then HF_ENDPOINT, then huggingface.co; no trailing slash. */
export function hubEndpoint(explicit?: string): string {
  const raw = explicit ?? process.env.HF_ENDPOINT ?? "https://huggingface.co";
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`invalid Hub endpoint ${JSON.stringify(raw)} (from ${explicit !== undefined ? "options.endpoint" : "HF_ENDPOINT"})`);
  }
  return url.href.replace(/\/+$/, "");
}

/**
 * The token: explicit option, then HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), then the file
 * `huggingface-cli login` writes (HF_TOKEN_PATH, else HF_HOME/token, else ~/.cache/huggingface/token),
 * the same order as huggingface_hub. `token: ""` means "send none".
 */
export function hubToken(explicit?: string): string | undefined {
  if (explicit !== undefined) return explicit.trim() || undefined;
  for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]) {
    const v = process.env[name]?.trim();
    if (v) return v;
  }
  const home = process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  const path = process.env.HF_TOKEN_PATH ?? join(home, "token");
  try {
    if (existsSync(path)) return readTextFile(path, 4096).trim() || undefined;
  } catch {
    // unreadable token file: behave as if there were none
  }
  return undefined;
}

/** Rejects names that would leave the snapshot folder once joined onto it. */
export function checkRelativePath(path: string, what: string): void {
  const bad =
    path.length === 0 ||
    path.startsWith("/") ||
    path.includes("\\") ||
    path.includes("\0") ||
    /^[a-zA-Z]:/.test(path) ||
    path.split("/").some((seg) => seg === "" || seg === "." || seg === "..");
  if (bad) throw new Error(`${what}: unsafe path ${JSON.stringify(path)}`);
}

export class RepoCache {
  readonly folder: string;

  constructor(
    readonly cacheDir: string,
    readonly repoId: string,
  ) {
    this.folder = repoFolder(cacheDir, repoId);
  }

  blobPath(etag: string): string {
    return join(this.folder, "blobs", etag);
  }

  snapshotDir(commit: string): string {
    return join(this.folder, "snapshots", commit);
  }

  pointerPath(commit: string, file: string): string {
    return join(this.snapshotDir(commit), file);
  }

  noExistPath(commit: string, file: string): string {
    return join(this.folder, ".no_exist", commit, file);
  }

  refPath(revision: string): string {
    return join(this.folder, "refs", revision);
  }

  /** The commit a revision resolves to from the cache alone, or undefined. */
  commitFor(revision: string): string | undefined {
    if (COMMIT_RE.test(revision)) return revision;
    try {
      const commit = readTextFile(this.refPath(revision), 4096).trim();
      return COMMIT_RE.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const path = this.refPath(revision);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, commit);
  }

  /** True if the snapshot has `file` (following the symlink to an existing blob). */
  hasFile(commit: string, file: string): boolean {
    return existsSync(this.pointerPath(commit, file));
  }

  knownMissing(commit: string, file: string): boolean {
    return existsSync(this.noExistPath(commit, file));
  }

  async markMissing(commit: string, file: string): Promise<void> {
    const path = this.noExistPath(commit, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, "");
  }

  /**
   * Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink (a copy where symlinks
   * fail). The link is made under a temporary name and renamed into place, so concurrent callers
   * never see a missing pointer, and nothing ever writes through an existing one.
   */
  async link(commit: string, file: string, etag: string): Promise<void> {
    const blob = this.blobPath(etag);
    const pointer = this.pointerPath(commit, file);
    await mkdir(dirname(pointer), { recursive: true });
    const tmp = `${pointer}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    try {
      try {
        await symlink(relative(dirname(pointer), blob), tmp);
      } catch {
        await copyFile(blob, tmp);
      }
      await rename(tmp, pointer);
    } finally {
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }
}
