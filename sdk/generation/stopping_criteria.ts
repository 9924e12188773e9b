// Stopping criteria, as transformers' generation/stopping_criteria.py: each says, per row, whether
// that row is done after the token just appended.
export interface TokenDecoder {
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
}

export interface StoppingCriteria {
  /** `promptLength` ids of each row are the prompt; the rest were generated. */
  done(inputIds: number[][], promptLength: number): boolean[];
}

export class MaxLengthCriteria implements StoppingCriteria {
  constructor(readonly maxLength: number) {}
  done(inputIds: number[][]): boolean[] {
    return inputIds.map((ids) => ids.length >= this.maxLength);
  }
}

export class EosTokenCriteria implements StoppingCriteria {
  constructor(readonly eosTokenIds: number[]) {}
  done(inputIds: number[][]): boolean[] {
    return inputIds.map((ids) => this.eosTokenIds.includes(ids[ids.length - 1]));
  }
}

/**
 * Stops when a stop string appears in the generated text AND overlaps the last token, so a stop
 * string is caught as soon as the token completing it arrives (even if that token runs past it),
 * but never because of text generated earlier - the rule transformers' StopStringCriteria applies.
 * Works on decoded text rather than transformers' precomputed token tables: same decisions, no
 * per-vocabulary preprocessing.
 */
export class StopStringCriteria implements StoppingCriteria {
  readonly stopStrings: string[];
  constructor(readonly tokenizer: TokenDecoder, stopStrings: string | string[]) {
    this.stopStrings = ([] as string[]).concat(stopStrings);
    if (this.stopStrings.some((s) => typeof s !== "string" || s.length === 0)) {
      throw new Error("generate: stop_strings must be non-empty strings");
    }
  }
  done(inputIds: number[][], promptLength: number): boolean[] {
    return inputIds.map((ids) => {
      const generated = ids.slice(promptLength);
      if (generated.length === 0) return false;
      const before = this.tokenizer.decode(generated.slice(0, -1)).length;
      const text = this.tokenizer.decode(generated);
      return this.stopStrings.some((stop) => {
        const from = Math.max(0, before - stop.length + 1);
        const at = text.indexOf(stop, from);
        return at >= 0 && at + stop.length > before;
      });
    });
  }
}
