// Numeric comparisons for parity tests.
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates as NaN
  }
  return m;
}

export function std(a: ArrayLike<number>): number {
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < a.length; i++) {
    s += a[i];
    s2 += a[i] * a[i];
  }
  const mean = s / a.length;
  return Math.sqrt(s2 / a.length - mean * mean);
}

/** Indices of the k largest values of each row (ties: lower index first, as torch.topk on CPU). */
export function topK(values: ArrayLike<number>, rowLength: number, k: number): number[][] {
  const rows: number[][] = [];
  for (let r = 0; r < values.length / rowLength; r++) {
    const idx = Array.from({ length: rowLength }, (_, i) => i);
    idx.sort((a, b) => values[r * rowLength + b] - values[r * rowLength + a] || a - b);
    rows.push(idx.slice(0, k).sort((a, b) => a - b));
  }
  return rows;
}

/** The arrays one after the other (a prefill's logits and each decoded step's, say). */
export function concat(parts: ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
