// Errors raised while resolving a Hub repo. Every message names the repo id (and the file or
// revision at fault) so that a failing from_pretrained call says what to fix.

export type HubErrorCode =
  | "invalid_id"
  | "access_denied" // 401/403: gated or private repo, missing or refused token
  | "repo_not_found"
  | "revision_not_found"
  | "file_not_found"
  | "not_in_cache" // offline (HF_HUB_OFFLINE / local_files_only) and the cache lacks what is needed
  | "connection" // the endpoint could not be reached and the cache could not serve the request
  | "interrupted" // a download stopped mid-file; the .incomplete file is kept for resume
  | "checksum" // the downloaded bytes do not match the sha256 / git oid the Hub announced
  | "http"; // any other HTTP failure

export class HubError extends Error {
  readonly code: HubErrorCode;
  readonly repo_id?: string;
  readonly file?: string;
  readonly status?: number;

  constructor(code: HubErrorCode, message: string, extra: { repo_id?: string; file?: string; status?: number; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "HubError";
    this.code = code;
    this.repo_id = extra.repo_id;
    this.file = extra.file;
    this.status = extra.status;
  }
}

/** A fetch failure before any HTTP status arrived (refused, reset, DNS, TLS...). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof HubError) return err.code === "connection";
  // undici reports these as TypeError("fetch failed") with the socket error as cause.
  return err.name === "TypeError" && /fetch failed/i.test(err.message);
}

/** The innermost cause's message, for "... (other side closed)" style details. */
export function describeCause(err: unknown): string {
  let cur: unknown = err;
  let msg = err instanceof Error ? err.message : String(err);
  for (let depth = 0; depth < 5 && cur instanceof Error && cur.cause !== undefined; depth++) {
    cur = cur.cause;
    if (cur instanceof Error && cur.message) msg = cur.message;
    else if (typeof cur === "string") msg = cur;
  }
  return msg;
}
