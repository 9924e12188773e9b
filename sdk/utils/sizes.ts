// Checked size arithmetic for sizes a user or a file asks for, before anything is allocated: a product past
// what can be indexed, or past the memory it would cost, becomes an error saying what it would need.
import { totalmem } from "node:os";

/** Human-readable bytes (GiB with two decimals above 1 GiB). */
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${bytes} bytes`;
}

/** The product of non-negative integer factors; throws `${what}: a x b ... is more than LIMIT` when it exceeds
 * `limit` (default: the largest exact integer, so the product is never rounded). */
export function checkedProduct(factors: number[], what: string, limit = Number.MAX_SAFE_INTEGER): number {
  let p = 1;
  for (const f of factors) {
    if (!Number.isInteger(f) || f < 0) throw new Error(`${what}: ${f} is not a size`);
    p *= f;
  }
  if (p > limit) throw new Error(`${what}: ${factors.join(" x ")} = ${p} is more than ${limit}`);
  return p;
}

/** Elements a JS typed array or array may hold here (V8's limit for typed arrays). */
export const MAX_ARRAY_ELEMENTS = 2 ** 32 - 1;

/** Refuses an allocation of `bytes` for `what` when it is more than this machine's memory. */
export function checkAffordable(bytes: number, what: string): void {
  // LLAMA4_TS_MEMORY_LIMIT (bytes) lowers the bound, e.g. for a process run under a memory limit.
  const limit = Number(process.env.LLAMA4_TS_MEMORY_LIMIT);
  const total = Number.isFinite(limit) && limit > 0 ? Math.min(limit, totalmem()) : totalmem();
  if (!(bytes <= total)) throw new Error(`${what} would need ${formatBytes(bytes)}, more than this machine's ${formatBytes(total)} of memory`);
}
