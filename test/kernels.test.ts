// Every kernel set this CPU can run (avx512, avx2, scalar) against a float64 reference of the same
// product, on shapes that cross every edge of the kernels: 1-4 tokens (row kernels), 8+ tokens (packed GEMM),
// ragged panels, inner dimensions past the GEMM's depth block (256) and outputs past its column block (256),
// for both weight layouts ([out, in] nn.Linear and [in, out] fused experts) and every weight dtype; and
// attention's scores kernel on the same terms.
// Bound per output: 2 * 2^-24 * K * sum_k |x_k w_k|, twice the worst case of f32 accumulation over K terms in
// any order; a wrong index or a dropped term is off by about a whole term, 30 times what this allows at K = 513.
import { describe, expect, test } from "vitest";

import { availableKernels, torch } from "../sdk";
import { native } from "../sdk/native";

type DTypeName = "F32" | "BF16" | "F16";

// Deterministic pseudo-random numbers (mulberry32).
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Random weights in `dtype` with their exact values (16-bit patterns with exponents kept near 1).
function randomWeights(n: number, dtype: DTypeName, next: () => number): { bits: Float32Array | Uint16Array; values: Float64Array } {
  const values = new Float64Array(n);
  if (dtype === "F32") {
    const bits = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = bits[i] = next() * 2 - 1;
    return { bits, values };
  }
  const bits = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const sign = next() < 0.5 ? 1 : -1;
    if (dtype === "BF16") {
      const exponent = 120 + Math.floor(next() * 8), mantissa = Math.floor(next() * 128);
      bits[i] = ((sign < 0 ? 1 : 0) << 15) | (exponent << 7) | mantissa;
      values[i] = sign * 2 ** (exponent - 127) * (1 + mantissa / 128);
    } else {
      const exponent = 8 + Math.floor(next() * 8), mantissa = Math.floor(next() * 1024);
      bits[i] = ((sign < 0 ? 1 : 0) << 15) | (exponent << 10) | mantissa;
      values[i] = sign * 2 ** (exponent - 15) * (1 + mantissa / 1024);
    }
  }
  return { bits, values };
}

// Worst error of y[t, n] against sum_k x[t, k] w(n, k) in float64, as a fraction of the bound
// 2 * 2^-24 * steps * sum_k |x[t, k] w(n, k)| (steps: the f32 roundings an output goes through).
function worstAccumulationError(y: Float32Array, x: ArrayLike<number>, tokens: number, K: number, N: number,
                                weight: (n: number, k: number) => number, steps: number): number {
  let worst = 0;
  for (let t = 0; t < tokens; t++)
    for (let n = 0; n < N; n++) {
      let ref = 0, magnitude = 0;
      for (let k = 0; k < K; k++) {
        const term = x[t * K + k] * weight(n, k);
        ref += term;
        magnitude += Math.abs(term);
      }
      worst = Math.max(worst, Math.abs(y[t * N + n] - ref) / (2 * 2 ** -24 * steps * magnitude + 1e-30));
    }
  return worst;
}

const SETS = availableKernels();
const TOKENS = [1, 2, 3, 4, 5, 7, 8, 13, 33];
const SHAPES: [number, number][] = [ // [in, out]
  [5, 3],
  [17, 40],
  [64, 64],
  [300, 70],
  [513, 260],
];

describe("kernel sets", () => {
  test("this CPU offers the portable set and, on x86-64, at least AVX2", () => {
    expect(SETS.at(-1)).toBe("scalar");
    if (process.arch === "x64") expect(SETS).toContain("avx2");
  });

  describe.each(SETS)("%s", (kernels) => {
    test.each(["F32", "BF16", "F16"] as DTypeName[])("%s weights, both layouts, every shape", (dtype) => {
      const next = rng(7);
      let checked = 0;
      for (const [K, N] of SHAPES) {
        const w = randomWeights(K * N, dtype, next);
        for (const tokens of TOKENS) {
          const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
          for (const inOut of [false, true]) {
            const [rows, cols] = inOut ? [K, N] : [N, K];
            const y = native().matmul({ kernels, x, tokens, weight: w.bits, dtype, rows, cols, inOut });
            expect(y.length).toBe(tokens * N);
            const worst = worstAccumulationError(y, x, tokens, K, N, (n, k) => w.values[inOut ? k * N + n : n * K + k], K);
            expect(worst, `${kernels} ${dtype} K=${K} N=${N} tokens=${tokens} inOut=${inOut}`).toBeLessThanOrEqual(1);
            checked++;
          }
        }
      }
      expect(checked).toBe(SHAPES.length * TOKENS.length * 2);
    });
  });

  // Attention's scores kernel (tiles of queries x keys whose partial sums one transpose-add tree folds into their
  // scores) computes the nn.Linear product of queries and keys [n, D]: same bound, on head dimensions around the
  // vector widths, with query and key counts that leave ragged tiles.
  describe.each(SETS)("%s attention scores", (kernels) => {
    test.each(["F32", "BF16", "F16"] as DTypeName[])("%s keys against a float64 reference", (dtype) => {
      const next = rng(17);
      let checked = 0;
      for (const D of [5, 16, 17, 64, 128, 130])
        for (const n of [1, 3, 4, 5, 17, 37]) {
          const keys = randomWeights(n * D, dtype, next);
          for (const rows of [1, 2, 4, 5, 7, 13]) {
            const q = new Float32Array(rows * D).map(() => next() * 2 - 1);
            const scores = native().matmul({ kernels, x: q, tokens: rows, weight: keys.bits, dtype, rows: n, cols: D, inOut: false, attentionScores: true });
            expect(scores.length).toBe(rows * n);
            const worst = worstAccumulationError(scores, q, rows, D, n, (j, d) => keys.values[j * D + d], D);
            expect(worst, `${kernels} ${dtype} D=${D} n=${n} rows=${rows}`).toBeLessThanOrEqual(1);
            checked++;
          }
        }
      expect(checked).toBe(6 * 6 * 6);
    });

    test("a score's bits do not depend on the other queries and keys in the call", () => {
      const next = rng(19);
      const D = 128, n = 37, rows = 13;
      const keys = randomWeights(n * D, "F32", next);
      const q = new Float32Array(rows * D).map(() => next() * 2 - 1);
      const all = native().matmul({ kernels, x: q, tokens: rows, weight: keys.bits, dtype: "F32", rows: n, cols: D, inOut: false, attentionScores: true });
      for (const r of [0, 6, 12])
        for (const [first, count] of [[0, 1], [5, 32], [36, 1]]) {
          const some = native().matmul({ kernels, x: q.slice(r * D, (r + 1) * D), tokens: 1, weight: keys.bits.slice(first * D, (first + count) * D),
            dtype: "F32", rows: count, cols: D, inOut: false, attentionScores: true });
          expect(Array.from(some), `query ${r}, keys ${first}..${first + count}`).toEqual(Array.from(all.subarray(r * n + first, r * n + first + count)));
        }
    });
  });

  test.each(SETS)("%s: a token's outputs are bit-identical whether it runs alone (decode) or among many (prefill)", (kernels) => {
    const next = rng(11);
    for (const dtype of ["F32", "BF16"] as DTypeName[])
      for (const [K, N] of [[300, 70], [513, 260]] as [number, number][]) {
        const w = randomWeights(K * N, dtype, next);
        const tokens = 33;
        const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
        for (const inOut of [false, true]) {
          const [rows, cols] = inOut ? [K, N] : [N, K];
          const all = native().matmul({ kernels, x, tokens, weight: w.bits, dtype, rows, cols, inOut });
          for (const t of [0, 5, 32]) {
            const one = native().matmul({ kernels, x: x.slice(t * K, (t + 1) * K), tokens: 1, weight: w.bits, dtype, rows, cols, inOut });
            expect(Array.from(one), `${dtype} K=${K} inOut=${inOut} token ${t}`).toEqual(Array.from(all.subarray(t * N, (t + 1) * N)));
          }
        }
      }
  });

  // torch.set_float32_matmul_precision("medium"): activations of products with bf16 weights are rounded to
  // bf16 (round to nearest even), then multiplied exactly and summed in f32 (AVX512_BF16 dot products for 5+
  // tokens where the CPU has them). Same bound, against a reference on the rounded activations.
  test.each(SETS)("%s: medium matmul precision rounds bf16 products' activations to bf16, nothing else", (kernels) => {
    const roundBf16 = (v: number) => {
      const u = new Uint32Array(new Float32Array([v]).buffer);
      u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) << 16;
      return new Float32Array(u.buffer)[0];
    };
    const next = rng(13);
    torch.set_float32_matmul_precision("medium");
    try {
      expect(torch.get_float32_matmul_precision()).toBe("medium");
      for (const [K, N] of [[17, 40], [300, 70], [513, 260]] as [number, number][]) {
        const w = randomWeights(K * N, "BF16", next);
        for (const tokens of [1, 4, 5, 13, 33]) {
          const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
          const xr = x.map(roundBf16);
          for (const inOut of [false, true]) {
            const [rows, cols] = inOut ? [K, N] : [N, K];
            const y = native().matmul({ kernels, x, tokens, weight: w.bits, dtype: "BF16", rows, cols, inOut });
            let worst = 0, fromExact = 0;
            for (let t = 0; t < tokens; t++)
              for (let n = 0; n < N; n++) {
                let ref = 0, exact = 0, magnitude = 0;
                for (let k = 0; k < K; k++) {
                  const wv = w.values[inOut ? k * N + n : n * K + k];
                  ref += xr[t * K + k] * wv;
                  exact += x[t * K + k] * wv;
                  magnitude += Math.abs(xr[t * K + k] * wv);
                }
                worst = Math.max(worst, Math.abs(y[t * N + n] - ref) / (2 * 2 ** -24 * K * magnitude));
                fromExact = Math.max(fromExact, Math.abs(y[t * N + n] - exact) / magnitude);
              }
            expect(worst, `${kernels} K=${K} tokens=${tokens} inOut=${inOut}`).toBeLessThanOrEqual(1);
            expect(fromExact).toBeGreaterThan(1e-6); // the rounding did happen
          }
        }
      }
      // f32 weights are not affected
      const x = new Float32Array(64).map(() => next() - 0.5), weight = new Float32Array(64 * 8).map(() => next() - 0.5);
      const y = native().matmul({ kernels, x, tokens: 1, weight, dtype: "F32", rows: 8, cols: 64, inOut: false });
      torch.set_float32_matmul_precision("highest");
      expect(Array.from(y)).toEqual(Array.from(native().matmul({ kernels, x, tokens: 1, weight, dtype: "F32", rows: 8, cols: 64, inOut: false })));
    } finally {
      torch.set_float32_matmul_precision("highest");
    }
    expect(torch.get_float32_matmul_precision()).toBe("highest");
    expect(() => torch.set_float32_matmul_precision("low" as "medium")).toThrow(/"highest", "high" or "medium", got "low"/);
  });

  // Block-quantized weights (dtype "q8" / "q4"): the kernel multiplies the quantized weights by the activations
  // quantized per block of 32 (int8, scale = amax / 127). Checked in three parts: (1) the dequantized weights
  // and activations are within the rounding bound of the originals (half a step; q4's top value may clamp, one
  // step), which pins the storage layout; (2) the output equals the float64 product of those dequantized values
  // within the f32 rounding of the steps the kernels take after the exact integer block sums; (3) a token's
  // outputs do not depend on how many tokens run with it.
  describe.each(SETS)("%s, quantized weights", (kernels) => {
    const QSHAPES: [number, number][] = [[5, 3], [64, 33], [300, 70], [513, 260], [1100, 40]];
    test.each(["q8", "q4"] as const)("%s: dequantized inputs within a rounding step, products exact to f32 accumulation", (quantize) => {
      const next = rng(17);
      let checked = 0;
      const blockBound = (v: ArrayLike<number>, start: number, end: number, steps: number) => {
        let amax = 0;
        for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(v[i]));
        return amax / steps * (1 + 2 ** -10);
      };
      for (const [K, N] of QSHAPES)
        for (const tokens of [1, 2, 4, 5, 13, 33]) {
          const w = randomWeights(K * N, "BF16", next);
          const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
          for (const inOut of [false, true]) {
            const [rows, cols] = inOut ? [K, N] : [N, K];
            const r = native().matmul({ kernels, x, tokens, weight: w.bits, dtype: "BF16", rows, cols, inOut, quantize });
            const original = (n: number, k: number) => w.values[inOut ? k * N + n : n * K + k];
            let weightError = 0, activationError = 0; // worst error / its bound
            for (let n = 0; n < N; n++) {
              const row = Float64Array.from({ length: K }, (_, k) => original(n, k));
              for (let b = 0; b < K; b += 32) {
                const bound = blockBound(row, b, Math.min(K, b + 32), quantize === "q8" ? 2 * 127 : 8);
                for (let k = b; k < Math.min(K, b + 32); k++) weightError = Math.max(weightError, Math.abs(r.weight[n * K + k] - row[k]) / bound);
              }
            }
            for (let t = 0; t < tokens; t++)
              for (let b = 0; b < K; b += 32) {
                const bound = blockBound(x, t * K + b, t * K + Math.min(K, b + 32), 2 * 127);
                for (let k = b; k < Math.min(K, b + 32); k++) activationError = Math.max(activationError, Math.abs(r.x[t * K + k] - x[t * K + k]) / bound);
              }
            expect(weightError, `weights ${quantize} K=${K} N=${N} inOut=${inOut}`).toBeLessThanOrEqual(1);
            expect(activationError, `activations K=${K} tokens=${tokens}`).toBeLessThanOrEqual(1);
            // f32 steps per output: one scale product and one fma per block, then a sum over up to 16 lanes
            const worst = worstAccumulationError(r.y, r.x, tokens, K, N, (n, k) => r.weight[n * K + k], 2 * Math.ceil(K / 32) + 16);
            expect(worst, `${kernels} ${quantize} K=${K} N=${N} tokens=${tokens} inOut=${inOut}`).toBeLessThanOrEqual(1);
            checked++;
          }
        }
      expect(checked).toBe(QSHAPES.length * 6 * 2);
    });

    test.each(["q8", "q4"] as const)("%s: a token's outputs are bit-identical alone and among many", (quantize) => {
      const next = rng(19);
      const [K, N, tokens] = [1100, 70, 13];
      const w = randomWeights(K * N, "BF16", next);
      const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
      const all = native().matmul({ kernels, x, tokens, weight: w.bits, dtype: "BF16", rows: N, cols: K, inOut: false, quantize });
      for (const t of [0, 6, 12]) {
        const one = native().matmul({ kernels, x: x.slice(t * K, (t + 1) * K), tokens: 1, weight: w.bits, dtype: "BF16", rows: N, cols: K, inOut: false, quantize });
        expect(Array.from(one.y), `token ${t}`).toEqual(Array.from(all.y.subarray(t * N, (t + 1) * N)));
      }
    });
  });

  // FP8 weights (e4m3, a scale per output row: FbgemmFp8's rule): widened exactly in registers, products in f32. The
  // dequantized weights are within half an e4m3 step (2^-4 relative, or the subnormal step) of the originals, and the
  // output equals the float64 product of them within the f32 accumulation bound.
  test.each(SETS)("%s: FP8 weights, every shape and token count", (kernels) => {
    const next = rng(23);
    for (const [K, N] of SHAPES)
      for (const tokens of [1, 3, 5, 33]) {
        const w = randomWeights(K * N, "BF16", next);
        const x = new Float32Array(tokens * K).map(() => next() * 2 - 1);
        for (const inOut of [false, true]) {
          const [rows, cols] = inOut ? [K, N] : [N, K];
          const r = native().matmul({ kernels, x, tokens, weight: w.bits, dtype: "BF16", rows, cols, inOut, quantize: "fp8" });
          let weightError = 0;
          for (let n = 0; n < N; n++) {
            let amax = 0;
            for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(w.values[inOut ? k * N + n : n * K + k]));
            const scale = Math.max(amax / 448, 1 / (448 * 512));
            for (let k = 0; k < K; k++) {
              const v = w.values[inOut ? k * N + n : n * K + k];
              weightError = Math.max(weightError, Math.abs(r.weight[n * K + k] - v) / Math.max(2 ** -4 * Math.abs(v), 2 ** -10 * scale));
            }
          }
          const worst = worstAccumulationError(r.y, x, tokens, K, N, (n, k) => r.weight[n * K + k], K + 2);
          expect(weightError, `weights K=${K} N=${N} inOut=${inOut}`).toBeLessThanOrEqual(1);
          expect(worst, `${kernels} K=${K} N=${N} tokens=${tokens} inOut=${inOut}`).toBeLessThanOrEqual(1);
        }
      }
  });

  test("an unknown kernel set or a mis-sized weight is refused by name", () => {
    const x = new Float32Array(4), weight = new Float32Array(8);
    expect(() => native().matmul({ kernels: "sse9", x, tokens: 1, weight, dtype: "F32", rows: 2, cols: 4, inOut: false }))
      .toThrow(/no kernel set "sse9"/);
    expect(() => native().matmul({ kernels: "scalar", x, tokens: 1, weight, dtype: "F32", rows: 3, cols: 4, inOut: false }))
      .toThrow(/weight \[rows, cols\]/);
  });
});
