// The seeded random source behind sampling. Hand-written because it is a dozen lines and the
// sequence must be reproducible across platforms (Math.random cannot be seeded).
// xoshiro128** seeded through splitmix32.
export class Random {
  private s = new Uint32Array(4);

  constructor(seed: number = Date.now() ^ (Math.random() * 2 ** 32)) {
    this.seed(seed);
  }

  seed(seed: number): void {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 2 ** 32;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The process-wide generator that sampling uses unless a call passes its own. */
export const globalRandom = new Random();

/** transformers.set_seed: makes the following sampling calls reproducible. */
export function set_seed(seed: number): void {
  if (!Number.isInteger(seed)) throw new Error(`set_seed expects an integer, got ${seed}`);
  globalRandom.seed(seed);
}
