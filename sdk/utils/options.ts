// Option-name checking for snake_case option objects: a misspelt option is an error that suggests
// the closest valid name, rather than being silently ignored.

/** Levenshtein distance (small strings only). */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The allowed name closest to `name`, if it is close enough to be a likely typo. */
export function closestName(name: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/** Throws if `options` has a key outside `allowed`, naming the function and the likely intended option. */
export function checkOptions(fnName: string, options: object | undefined | null, allowed: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== "object") throw new Error(`${fnName}: options must be an object`);
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    const guess = closestName(key, allowed);
    throw new Error(`${fnName}: unknown option '${key}'` + (guess ? ` (did you mean '${guess}'?)` : ""));
  }
}
