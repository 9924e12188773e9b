// Logits processors and warpers, as transformers' generation/logits_process.py: each takes the ids
// generated so far (one list per row) and the next-token scores [batch, vocab], and edits the
// scores in place.
export interface LogitsProcessor {
  process(inputIds: number[][], scores: Float32Array[]): void;
}

/** Divides positive / multiplies negative scores of tokens already present (left padding ignored). */
export class RepetitionPenaltyLogitsProcessor implements LogitsProcessor {
  constructor(readonly penalty: number, readonly promptIgnoreLength: number[] = []) {}
  process(inputIds: number[][], scores: Float32Array[]): void {
    inputIds.forEach((ids, b) => {
      const seen = new Set(ids.slice(this.promptIgnoreLength[b] ?? 0));
      const row = scores[b];
      for (const id of seen) row[id] = row[id] < 0 ? row[id] * this.penalty : row[id] / this.penalty;
    });
  }
}

/** Forbids end-of-sequence tokens until the sequence (prompt included) is min_length long. */
export class MinLengthLogitsProcessor implements LogitsProcessor {
  constructor(readonly minLength: number, readonly eosTokenIds: number[]) {}
  process(inputIds: number[][], scores: Float32Array[]): void {
    inputIds.forEach((ids, b) => {
      if (ids.length < this.minLength) for (const e of this.eosTokenIds) if (e < scores[b].length) scores[b][e] = -Infinity;
    });
  }
}

export class TemperatureLogitsWarper implements LogitsProcessor {
  constructor(readonly temperature: number) {}
  process(_ids: number[][], scores: Float32Array[]): void {
    for (const row of scores) for (let i = 0; i < row.length; i++) row[i] /= this.temperature;
  }
}

/** Keeps the k best scores (ties with the k-th kept too), as torch.topk's threshold does. */
export class TopKLogitsWarper implements LogitsProcessor {
  constructor(readonly topK: number, readonly minTokensToKeep = 1) {}
  process(_ids: number[][], scores: Float32Array[]): void {
    for (const row of scores) {
      const k = Math.min(Math.max(this.topK, this.minTokensToKeep), row.length);
      const threshold = Float32Array.from(row).sort((a, b) => b - a)[k - 1];
      for (let i = 0; i < row.length; i++) if (row[i] < threshold) row[i] = -Infinity;
    }
  }
}

/**
 * Nucleus sampling: drops the least likely tokens whose total probability is <= 1 - top_p.
 * Works from a sorted copy of the probabilities (a typed-array sort: fast on a 202k vocabulary)
 * and a threshold; tokens tied at the threshold are all kept.
 */
export class TopPLogitsWarper implements LogitsProcessor {
  constructor(readonly topP: number, readonly minTokensToKeep = 1) {}
  process(_ids: number[][], scores: Float32Array[]): void {
    for (const row of scores) {
      const probs = Float64Array.from(softmax(row));
      const ascending = Float64Array.from(probs).sort();
      const last = ascending.length - this.minTokensToKeep; // the top minTokensToKeep always stay
      let cumulative = 0;
      let cut = 0; // ascending[0..cut) are removed
      while (cut < last && (cumulative += ascending[cut]) <= 1 - this.topP) cut++;
      if (cut === 0) continue;
      const threshold = ascending[cut];
      for (let i = 0; i < row.length; i++) if (probs[i] < threshold) row[i] = -Infinity;
    }
  }
}

/** Drops tokens whose probability is below min_p times the top token's. */
export class MinPLogitsWarper implements LogitsProcessor {
  constructor(readonly minP: number, readonly minTokensToKeep = 1) {}
  process(_ids: number[][], scores: Float32Array[]): void {
    for (const row of scores) {
      const probs = softmax(Array.from(row));
      let top = 0;
      for (const p of probs) if (p > top) top = p;
      const threshold = this.minP * top;
      const kept = probs.filter((p) => p >= threshold).length;
      if (kept < this.minTokensToKeep) {
        const order = Array.from(row.keys()).sort((a, b) => probs[b] - probs[a]);
        const keep = new Set(order.slice(0, this.minTokensToKeep));
        for (let i = 0; i < row.length; i++) if (!keep.has(i)) row[i] = -Infinity;
      } else {
        for (let i = 0; i < row.length; i++) if (probs[i] < threshold) row[i] = -Infinity;
      }
    }
  }
}

/** Softmax in float64 (stable: the max is subtracted first). */
export function softmax(values: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
  const out = new Array<number>(values.length);
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += out[i] = Math.exp(values[i] - max);
  for (let i = 0; i < values.length; i++) out[i] /= sum;
  return out;
}
