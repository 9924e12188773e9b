// Checks of the snake_case option objects that stand in for Python keyword arguments. Python rejects
// a misspelt keyword argument; an options object would silently ignore it, so every public function
// checks its option names here and points at the closest valid one.

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps
 * ("lenght" -> "length" is one edit). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j < cols; j++) d[0][j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2][j - 2] + 1);
      d[i][j] = best;
    }
  }
  return d[rows - 1][cols - 1];
}

/** The candidate closest to `name` when it is close enough to be a plausible typo, else undefined. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  // Up to 2 edits, or a third of the name for long names. Failing that, the candidate sharing the
  // longest prefix, if that prefix is most of the name ("skip_specials" -> "skip_special_tokens").
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(name.length / 3));
  if (bestDistance <= limit) return best;
  let byPrefix: string | undefined;
  let prefixLength = 0;
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    let n = 0;
    while (n < c.length && n < lower.length && c[n] === lower[n]) n++;
    if (n > prefixLength) {
      byPrefix = candidate;
      prefixLength = n;
    }
  }
  return prefixLength >= 4 && prefixLength >= 0.6 * lower.length ? byPrefix : undefined;
}

/** Message for an unknown option name, with a "did you mean" hint when one is close. */
export function unknownOptionMessage(fnName: string, name: string, allowed: readonly string[]): string {
  const suggestion = closestName(name, allowed);
  const hint = suggestion !== undefined ? ` (did you mean '${suggestion}'?)` : ` (valid options: ${allowed.join(", ")})`;
  return `${fnName}: unknown option '${name}'${hint}`;
}

/**
 * Throws when `options` is not a plain object or has a key outside `allowed`; keys whose value is
 * `undefined` count as absent only if allowed (a misspelt key is an error whatever its value).
 *
 *     checkOptions("tokenizer", { max_lenght: 8 }, ["max_length", "padding"])
 *     // Error: tokenizer: unknown option 'max_lenght' (did you mean 'max_length'?)
 */
export function checkOptions(fnName: string, options: object | null | undefined, allowed: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`${fnName}: options must be an object of named options, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) throw new Error(unknownOptionMessage(fnName, key, allowed));
  }
}

/** Short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
  if (typeof value === "object") return (value as object).constructor?.name ? `a ${(value as object).constructor.name}` : "an object";
  return `${typeof value} ${String(value)}`;
}

/** A value as a message quotes it: numbers as written (NaN and Infinity included, where JSON would say null),
 * strings quoted, other values described. */
export function valueText(value: unknown): string {
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
  if (value === undefined) return "undefined";
  return describe(value);
}
