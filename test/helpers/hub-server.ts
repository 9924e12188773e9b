// A stand-in for the Hugging Face Hub on 127.0.0.1, serving in-memory repos through exactly the
// endpoints sdk/hub uses (via @huggingface/hub and its own GETs):
//
//   GET  /api/models/<org>/<name>/revision/<rev>        model info; `sha` is the commit
//   POST /api/models/<org>/<name>/paths-info/<rev>      {paths} -> [{type, path, size, oid, lfs?}]
//   GET  /<org>/<name>/resolve/<rev>/<path>             the file; LFS files redirect (302) to
//   GET  /lfs-cdn/<sha256>                                 a "CDN" URL, as the Hub does
//
// Responses carry the Hub's headers: X-Repo-Commit, ETag (git oid, or sha256 for LFS),
// X-Linked-Etag / X-Linked-Size on LFS redirects, X-Error-Code on errors, Accept-Ranges and
// Content-Range (Range requests are honoured). Knobs: gated repos (401 without the right Bearer
// token), dropping the connection after N bytes of a file once, serving corrupted bytes, and a log
// of every request.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type FileSpec = string | Buffer | { content: string | Buffer; lfs?: boolean };

export interface CommitSpec {
  sha: string;
  files: Record<string, FileSpec>;
}

export interface RepoSpec {
  id: string; // "org/name"
  commits: CommitSpec[];
  /** branch or tag -> commit sha */
  refs: Record<string, string>;
  /** When set, every repo endpoint answers 401 unless `Authorization: Bearer <gatedToken>`. */
  gatedToken?: string;
}

export interface RecordedRequest {
  method: string;
  path: string; // decoded pathname, without the query
  url: string; // raw request URL
  headers: Record<string, string | string[] | undefined>;
}

interface ServedFile {
  content: Buffer;
  lfs: boolean;
  sha256: string;
  gitOid: string; // of the content (regular files) or of the LFS pointer (LFS files)
}

function gitBlobSha1(data: Buffer): string {
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

function serveFile(spec: FileSpec, path: string): ServedFile {
  const obj = typeof spec === "object" && !Buffer.isBuffer(spec) ? spec : { content: spec };
  const content = Buffer.isBuffer(obj.content) ? obj.content : Buffer.from(obj.content, "utf8");
  const lfs = obj.lfs ?? (Buffer.isBuffer(obj.content) || /\.(safetensors|bin|pth|pt|gguf)$/.test(path));
  const sha256 = createHash("sha256").update(content).digest("hex");
  const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${content.length}\n`);
  return { content, lfs, sha256, gitOid: gitBlobSha1(lfs ? pointer : content) };
}

export class HubServer {
  readonly requests: RecordedRequest[] = [];
  private readonly repos = new Map<string, RepoSpec & { served: Map<string, Map<string, ServedFile>> }>();
  private readonly drops = new Map<string, number>();
  private readonly corrupted = new Set<string>();
  private server?: Server;
  url = "";
  /** Answer Range requests (other than the 1-byte probe) with the whole file and a 200, as some proxies do. */
  ignoreRanges = false;

  constructor(repos: RepoSpec[] = []) {
    for (const repo of repos) this.addRepo(repo);
  }

  addRepo(repo: RepoSpec): void {
    const served = new Map<string, Map<string, ServedFile>>();
    for (const commit of repo.commits) {
      served.set(commit.sha, new Map(Object.entries(commit.files).map(([p, spec]) => [p, serveFile(spec, p)])));
    }
    this.repos.set(repo.id, { ...repo, served });
  }

  /** The first content response for `file` of `repoId` longer than `bytes` stops after `bytes` bytes. */
  dropAfter(repoId: string, file: string, bytes: number): void {
    this.drops.set(`${repoId}:${file}`, bytes);
  }

  /** Serve `file` of `repoId` with flipped bytes (same length) until cleared. */
  corrupt(repoId: string, file: string, on = true): void {
    if (on) this.corrupted.add(`${repoId}:${file}`);
    else this.corrupted.delete(`${repoId}:${file}`);
  }

  /** Paths of file downloads (resolve URLs), in order. */
  resolvedFiles(repoId?: string): string[] {
    const out: string[] = [];
    for (const r of this.requests) {
      const m = /^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/(.+)$/.exec(r.path);
      if (m && (!repoId || m[1] === repoId)) out.push(m[2]);
    }
    return out;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) this.json(res, 500, { error: String(err) });
        else res.destroy();
      });
    });
    await new Promise<void>((ok, fail) => {
      this.server!.once("error", fail);
      this.server!.listen(0, "127.0.0.1", () => ok());
    });
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": data.length, ...headers });
    res.end(data);
  }

  private fail(res: ServerResponse, status: number, code: string, message: string): void {
    this.json(res, status, { error: message }, { "X-Error-Code": code, "X-Error-Message": message });
  }

  private async body(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Repo, commit and files for a revision, or an error response already sent. */
  private lookup(req: IncomingMessage, res: ServerResponse, repoId: string, rev: string) {
    const repo = this.repos.get(repoId);
    if (!repo) {
      this.fail(res, 404, "RepoNotFound", `Repository not found: ${repoId}`);
      return undefined;
    }
    if (repo.gatedToken !== undefined && req.headers.authorization !== `Bearer ${repo.gatedToken}`) {
      this.fail(res, 401, "GatedRepo", `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it.`);
      return undefined;
    }
    const sha = repo.refs[rev] ?? (repo.served.has(rev) ? rev : undefined);
    if (!sha || !repo.served.has(sha)) {
      this.fail(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
      return undefined;
    }
    return { repo, sha, files: repo.served.get(sha)! };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const rawParts = url.pathname.split("/").slice(1);
    const parts = rawParts.map((p) => decodeURIComponent(p));
    this.requests.push({ method: req.method ?? "", path: parts.length ? "/" + parts.join("/") : "/", url: req.url ?? "", headers: { ...req.headers } });

    // /api/models/<org>/<name>/revision/<rev>
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "revision" && parts.length === 6 && req.method === "GET") {
      const repoId = `${parts[2]}/${parts[3]}`;
      const found = this.lookup(req, res, repoId, parts[5]);
      if (!found) return;
      this.json(res, 200, {
        _id: `id-${repoId}`,
        id: repoId,
        sha: found.sha,
        private: false,
        gated: found.repo.gatedToken !== undefined ? "manual" : false,
        downloads: 0,
        likes: 0,
        lastModified: "2025-01-01T00:00:00.000Z",
        siblings: [...found.files.keys()].map((rfilename) => ({ rfilename })),
      });
      return;
    }

    // /api/models/<org>/<name>/paths-info/<rev>
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "paths-info" && parts.length === 6 && req.method === "POST") {
      const repoId = `${parts[2]}/${parts[3]}`;
      const body = await this.body(req);
      const found = this.lookup(req, res, repoId, parts[5]);
      if (!found) return;
      const { paths } = JSON.parse(body || "{}") as { paths?: string[] };
      const out: unknown[] = [];
      for (const p of paths ?? []) {
        const f = found.files.get(p);
        if (f) {
          out.push({
            type: "file",
            path: p,
            size: f.content.length,
            oid: f.gitOid,
            ...(f.lfs && { lfs: { oid: f.sha256, size: f.content.length, pointerSize: 130 } }),
          });
        } else if ([...found.files.keys()].some((k) => k.startsWith(p + "/"))) {
          out.push({ type: "directory", path: p, size: 0, oid: gitBlobSha1(Buffer.from(p)) });
        }
      }
      this.json(res, 200, out);
      return;
    }

    // /<org>/<name>/resolve/<rev>/<path...>
    if (parts[2] === "resolve" && parts.length >= 5 && (req.method === "GET" || req.method === "HEAD")) {
      const repoId = `${parts[0]}/${parts[1]}`;
      const found = this.lookup(req, res, repoId, parts[3]);
      if (!found) return;
      const path = parts.slice(4).join("/");
      const f = found.files.get(path);
      if (!f) {
        this.fail(res, 404, "EntryNotFound", `${path} does not exist on "${parts[3]}"`);
        return;
      }
      if (f.lfs) {
        res.writeHead(302, {
          Location: `/lfs-cdn/${f.sha256}?repo=${encodeURIComponent(repoId)}&file=${encodeURIComponent(path)}`,
          "X-Repo-Commit": found.sha,
          ETag: `"${f.gitOid}"`,
          "X-Linked-Etag": `"${f.sha256}"`,
          "X-Linked-Size": String(f.content.length),
          "Content-Length": 0,
        });
        res.end();
        return;
      }
      this.sendContent(req, res, repoId, path, f, { "X-Repo-Commit": found.sha, ETag: `"${f.gitOid}"` });
      return;
    }

    // /lfs-cdn/<sha256>?repo=&file=  (a pre-signed CDN URL: no auth)
    if (parts[0] === "lfs-cdn" && parts.length === 2 && (req.method === "GET" || req.method === "HEAD")) {
      const repoId = url.searchParams.get("repo") ?? "";
      const path = url.searchParams.get("file") ?? "";
      for (const files of this.repos.get(repoId)?.served.values() ?? []) {
        const f = files.get(path);
        if (f && f.sha256 === parts[1]) {
          this.sendContent(req, res, repoId, path, f, { ETag: `"${f.sha256}"` });
          return;
        }
      }
      this.fail(res, 404, "EntryNotFound", "no such object");
      return;
    }

    this.fail(res, 404, "NotFound", `no route for ${req.method} ${url.pathname}`);
  }

  private sendContent(req: IncomingMessage, res: ServerResponse, repoId: string, path: string, f: ServedFile, headers: Record<string, string>): void {
    const key = `${repoId}:${path}`;
    let data = f.content;
    if (this.corrupted.has(key)) {
      data = Buffer.from(data);
      for (let i = 0; i < data.length; i += 997) data[i] ^= 0xff;
    }
    const total = data.length;
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = req.headers.range;
    if (range && !(this.ignoreRanges && range !== "bytes=0-0")) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= total) {
        res.writeHead(416, { "Content-Range": `bytes */${total}` });
        res.end();
        return;
      }
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), total - 1) : total - 1;
      status = 206;
    }
    const slice = data.subarray(start, end + 1);
    res.writeHead(status, {
      ...headers,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      "Content-Length": slice.length,
      ...(status === 206 && { "Content-Range": `bytes ${start}-${end}/${total}` }),
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const drop = this.drops.get(key);
    if (drop !== undefined && slice.length > drop) {
      this.drops.delete(key);
      res.write(slice.subarray(0, drop), () => {
        // Give the bytes time to reach the client before cutting the connection.
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    res.end(slice);
  }
}

/** A 40-hex commit sha derived from a label, for fixtures. */
export function fakeSha(label: string): string {
  return createHash("sha1").update(label).digest("hex");
}
