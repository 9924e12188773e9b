// generate(): sampling statistics, processors, stopping, options. Greedy parity with transformers
// is in text-parity.test.ts.
import { beforeAll, describe, expect, test } from "vitest";
import {
  GenerationConfig,
  Llama4ForCausalLM,
  MinPLogitsWarper,
  Random,
  RepetitionPenaltyLogitsProcessor,
  set_seed,
  Tensor,
  TopKLogitsWarper,
  TopPLogitsWarper,
} from "../sdk";
import { softmax } from "../sdk/generation/logits_process";
import { modelDir } from "./helpers/fixtures";

let model: Llama4ForCausalLM;
const PROMPT = [[17, 201, 99, 45, 333]];

beforeAll(async () => {
  model = await Llama4ForCausalLM.from_pretrained(modelDir("tiny-llama4-f32"));
});

async function nextTokenProbs(temperature = 1): Promise<number[]> {
  const out = await model.forward({ input_ids: PROMPT, logits_to_keep: 1 });
  return softmax(Array.from(out.logits.data, (v) => v / temperature));
}

/** Pearson's chi-square of observed counts against probabilities, bins with expected < 5 merged. */
function chiSquare(counts: number[], probs: number[], n: number): { stat: number; df: number } {
  let stat = 0;
  let df = -1;
  let restObserved = 0;
  let restExpected = 0;
  probs.forEach((p, i) => {
    const expected = p * n;
    if (expected >= 5) {
      stat += (counts[i] - expected) ** 2 / expected;
      df++;
    } else {
      restObserved += counts[i];
      restExpected += expected;
    }
  });
  if (restExpected > 0) {
    stat += (restObserved - restExpected) ** 2 / Math.max(restExpected, 1e-9);
    df++;
  }
  return { stat, df };
}

/** Upper 0.1% point of chi-square with df degrees of freedom (Wilson-Hilferty). */
function chiSquareCritical(df: number): number {
  const z = 3.0902; // standard normal 0.999 quantile
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

async function sampleFirstTokens(n: number, options: Record<string, unknown>): Promise<number[]> {
  const counts = new Array(model.text_config.vocab_size).fill(0);
  for (let i = 0; i < n; i++) {
    const out = await model.generate({ input_ids: PROMPT, max_new_tokens: 1, do_sample: true, ...options });
    counts[out.data[PROMPT[0].length]]++;
  }
  return counts;
}

describe("sampling", () => {
  test("top_k=1 sampling equals greedy decoding", async () => {
    const greedy = await model.generate({ input_ids: PROMPT, max_new_tokens: 16 });
    const sampled = await model.generate({ input_ids: PROMPT, max_new_tokens: 16, do_sample: true, top_k: 1 });
    expect(sampled.tolist()).toEqual(greedy.tolist());
  });

  test("a seeded run is reproducible, another seed differs", async () => {
    const run = async (seed: number) => {
      set_seed(seed);
      return (await model.generate({ input_ids: PROMPT, max_new_tokens: 24, do_sample: true, top_k: 0 })).tolist();
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    expect(await run(8)).not.toEqual(a);
  });

  test("token frequencies match softmax(logits) (chi-square, p = 0.001)", async () => {
    const n = 3000;
    set_seed(1234);
    const counts = await sampleFirstTokens(n, { top_k: 0 });
    const { stat, df } = chiSquare(counts, await nextTokenProbs(), n);
    expect(df).toBeGreaterThanOrEqual(3);
    expect(stat).toBeLessThan(chiSquareCritical(df));
  });

  test("temperature and top_k reshape the distribution as transformers' warpers do (chi-square)", async () => {
    const n = 3000;
    set_seed(99);
    const counts = await sampleFirstTokens(n, { temperature: 0.7, top_k: 5 });
    const probs = await nextTokenProbs(0.7);
    const top5 = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, i]) => i);
    const kept = probs.map((p, i) => (top5.includes(i) ? p : 0));
    const total = kept.reduce((a, b) => a + b, 0);
    counts.forEach((c, i) => {
      if (!top5.includes(i)) expect(c).toBe(0);
    });
    const { stat, df } = chiSquare(counts, kept.map((p) => p / total), n);
    expect(stat).toBeLessThan(chiSquareCritical(df));
  });

  test("a private generator leaves the global one alone", async () => {
    const a = await model.generate({ input_ids: PROMPT, max_new_tokens: 8, do_sample: true, generator: new Random(5) });
    const b = await model.generate({ input_ids: PROMPT, max_new_tokens: 8, do_sample: true, generator: new Random(5) });
    expect(a.tolist()).toEqual(b.tolist());
  });
});

describe("logits processors", () => {
  const row = () => [Float32Array.from([2.0, -1.0, 0.5, 3.0, -2.0, 1.0])];

  test("repetition_penalty divides positive and multiplies negative scores of seen tokens, past the padding", () => {
    const scores = row();
    new RepetitionPenaltyLogitsProcessor(2, [1]).process([[0, 1, 3]], scores);
    // token 0 is padding (ignored); 1 is negative -> x2; 3 is positive -> /2
    expect(Array.from(scores[0])).toEqual([2.0, -2.0, 0.5, 1.5, -2.0, 1.0]);
  });

  test("top_k keeps the k best", () => {
    const scores = row();
    new TopKLogitsWarper(2).process([[]], scores);
    expect(Array.from(scores[0])).toEqual([2.0, -Infinity, -Infinity, 3.0, -Infinity, -Infinity]);
  });

  test("top_p keeps the smallest set reaching the mass", () => {
    const scores = row();
    const probs = softmax(scores[0]);
    new TopPLogitsWarper(0.8).process([[]], scores);
    const kept = Array.from(scores[0], (v, i) => (v === -Infinity ? 0 : probs[i]));
    const mass = kept.reduce((a, b) => a + b, 0);
    expect(mass).toBeGreaterThanOrEqual(0.8);
    // dropping the least likely kept token would fall below 0.8
    const smallest = Math.min(...kept.filter((p) => p > 0));
    expect(mass - smallest).toBeLessThan(0.8);
  });

  test("min_p drops tokens below min_p x the top probability", () => {
    const scores = row();
    const probs = softmax(scores[0]);
    new MinPLogitsWarper(0.2).process([[]], scores);
    const top = Math.max(...probs);
    scores[0].forEach((v, i) => expect(v === -Infinity).toBe(probs[i] < 0.2 * top));
  });
});

describe("lengths, stopping and outputs", () => {
  test("max_new_tokens and max_length bound the length; the default is 20 new tokens", async () => {
    expect((await model.generate({ input_ids: PROMPT, max_new_tokens: 3 })).dims).toEqual([1, 8]);
    expect((await model.generate({ input_ids: PROMPT, max_length: 9 })).dims).toEqual([1, 9]);
    expect((await model.generate({ input_ids: PROMPT })).dims).toEqual([1, 25]);
  });

  test("eos_token_id lists stop each row; finished rows are padded", async () => {
    const free = await model.generate({ input_ids: [[5, 6, 7], [9, 10, 11]], max_new_tokens: 6 });
    const rows = free.tolist() as number[][];
    const stopAt = rows[0][4]; // the second token row 0 generates
    const out = await model.generate({ input_ids: [[5, 6, 7], [9, 10, 11]], max_new_tokens: 6, eos_token_id: [stopAt, 9999], pad_token_id: 0 });
    const got = out.tolist() as number[][];
    expect(got[0].slice(0, 5)).toEqual(rows[0].slice(0, 5));
    const row1Stop = rows[1].slice(3).indexOf(stopAt);
    if (row1Stop < 0) expect(got[1]).toEqual(rows[1]);
    // row 0 finished: the rest is padding, until row 1 stops or the length runs out
    expect(got[0].slice(5).every((t) => t === 0)).toBe(true);
  });

  test("min_new_tokens suppresses eos until reached", async () => {
    const free = await model.generate({ input_ids: PROMPT, max_new_tokens: 1 });
    const first = free.data[PROMPT[0].length];
    const out = await model.generate({ input_ids: PROMPT, max_new_tokens: 4, min_new_tokens: 2, eos_token_id: first });
    expect(out.dims).toEqual([1, 9]);
    expect(out.data[5]).not.toBe(first);
  });

  test("return_dict_in_generate with output_scores / output_logits", async () => {
    const out = await model.generate({ input_ids: PROMPT, max_new_tokens: 4, return_dict_in_generate: true, output_scores: true, output_logits: true, repetition_penalty: 1.5 });
    expect(out.sequences).toBeInstanceOf(Tensor);
    expect(out.scores).toHaveLength(4);
    expect(out.logits).toHaveLength(4);
    expect(out.scores![0].dims).toEqual([1, 512]);
    // the penalty changed the scores of prompt tokens, not the raw logits
    const t = PROMPT[0][0];
    const raw = out.logits![0].data[t];
    expect(out.scores![0].data[t]).toBeCloseTo(raw < 0 ? raw * 1.5 : raw / 1.5, 5);
  });

  test("generation_config.json is the default; call options override it", async () => {
    expect(model.generation_config).toBeInstanceOf(GenerationConfig);
    expect(model.generation_config.eos_token_id).toBe(2);
    expect(model.generation_config.pad_token_id).toBe(0);
    const merged = model.generation_config.merged({ max_new_tokens: 5 });
    expect(merged.max_new_tokens).toBe(5);
    expect(model.generation_config.max_new_tokens).toBeNull();
  });
});

describe("bad generate options", () => {
  test("an unknown option suggests the closest valid one", async () => {
    await expect(model.generate({ input_ids: PROMPT, max_new_token: 5 } as never)).rejects.toThrow(
      /generate: unknown option 'max_new_token' \(did you mean 'max_new_tokens'\?\)/,
    );
  });
  test("max_new_tokens <= 0", async () => {
    await expect(model.generate({ input_ids: PROMPT, max_new_tokens: 0 })).rejects.toThrow(/max_new_tokens must be an integer >= 1, got 0/);
  });
  test("temperature <= 0", async () => {
    await expect(model.generate({ input_ids: PROMPT, do_sample: true, temperature: 0 })).rejects.toThrow(/temperature must be a positive number/);
  });
  test("stop_strings without a tokenizer", async () => {
    await expect(model.generate({ input_ids: PROMPT, stop_strings: ["x"] })).rejects.toThrow(/stop_strings needs the tokenizer/);
  });
  test("beam search", async () => {
    await expect(model.generate({ input_ids: PROMPT, num_beams: 2 })).rejects.toThrow(/beam search/);
  });
});

describe("long-context options", () => {
  test("prefill_chunk_size feeds the prompt in pieces and gives the same tokens", async () => {
    const prompt = [Array.from({ length: 37 }, (_, i) => 3 + ((i * 13) % 500))];
    const whole = await model.generate({ input_ids: prompt, max_new_tokens: 10 });
    const pieces = await model.generate({ input_ids: prompt, max_new_tokens: 10, prefill_chunk_size: 8, cache_implementation: "hybrid" });
    expect(pieces.tolist()).toEqual(whole.tolist());
  });
  test("an unknown cache_implementation", async () => {
    await expect(model.generate({ input_ids: PROMPT, cache_implementation: "offloaded" })).rejects.toThrow(/cache_implementation "offloaded" is not supported/);
  });
});
