// Streamers, as transformers' generation/streamers.py: generate() calls put() with the prompt and
// then with each new token, and end() when done. Text is released in whole words so a streamed
// word never shows half-decoded.
import { TokenDecoder } from "./stopping_criteria";

export interface BaseStreamer {
  put(tokenIds: number[]): void;
  end(): void;
  /** Called instead of end() when generate fails or is cancelled (default: end()). */
  on_error?(error: unknown): void;
}

export interface TextStreamerOptions {
  /** Do not emit the prompt. */
  skip_prompt?: boolean;
  skip_special_tokens?: boolean;
}

/** Decodes tokens as they come and emits printable text via on_finalized_text. */
export class TextStreamer implements BaseStreamer {
  protected tokenCache: number[] = [];
  protected printLength = 0;
  protected nextIsPrompt = true;

  constructor(protected readonly tokenizer: TokenDecoder, protected readonly options: TextStreamerOptions = {}) {}

  put(tokenIds: number[]): void {
    if (this.options.skip_prompt && this.nextIsPrompt) {
      this.nextIsPrompt = false;
      return;
    }
    this.nextIsPrompt = false;
    this.tokenCache.push(...tokenIds);
    const text = this.tokenizer.decode(this.tokenCache, { skip_special_tokens: this.options.skip_special_tokens });
    let printable: string;
    if (text.endsWith("\n")) {
      printable = text.slice(this.printLength);
      this.tokenCache = [];
      this.printLength = 0;
    } else if (text.length > 0 && isCjk(text.codePointAt(text.length - 1)!)) {
      printable = text.slice(this.printLength);
      this.printLength += printable.length;
    } else if (text.endsWith("\uFFFD")) {
      printable = ""; // an incomplete UTF-8 sequence: wait for the rest
    } else {
      const cut = text.lastIndexOf(" ") + 1;
      printable = text.slice(this.printLength, Math.max(cut, this.printLength));
      this.printLength += printable.length;
    }
    this.on_finalized_text(printable, false);
  }

  end(): void {
    let printable = "";
    if (this.tokenCache.length) {
      const text = this.tokenizer.decode(this.tokenCache, { skip_special_tokens: this.options.skip_special_tokens });
      printable = text.slice(this.printLength);
    }
    this.tokenCache = [];
    this.printLength = 0;
    this.nextIsPrompt = true;
    this.on_finalized_text(printable, true);
  }

  /** Prints to stdout; override to send the text elsewhere. */
  on_finalized_text(text: string, streamEnd: boolean): void {
    process.stdout.write(streamEnd ? text + "\n" : text);
  }
}

/** TextIteratorStreamer for JavaScript: `for await (const text of streamer)` while generate runs. */
export class AsyncTextIteratorStreamer extends TextStreamer implements AsyncIterable<string> {
  private queue: string[] = [];
  private finished = false;
  private waiting: { resolve: (r: IteratorResult<string>) => void; reject: (e: unknown) => void } | null = null;
  private error: { reason: unknown } | null = null;

  /** generate failed or was cancelled: the text so far (a word still held back included) is still read,
   * then the iteration throws its error. Nothing changes once the stream has ended. */
  on_error(error: unknown): void {
    if (this.finished) return;
    this.error = { reason: error };
    this.end();
  }

  override on_finalized_text(text: string, streamEnd: boolean): void {
    if (text) this.push(text);
    if (streamEnd) {
      this.finished = true;
      this.wake();
    }
  }

  private push(text: string): void {
    this.queue.push(text);
    this.wake();
  }

  private wake(): void {
    if (!this.waiting || (!this.queue.length && !this.finished)) return;
    const waiting = this.waiting;
    this.waiting = null;
    this.settle(waiting.resolve, waiting.reject);
  }

  private settle(resolve: (r: IteratorResult<string>) => void, reject: (e: unknown) => void): void {
    if (this.queue.length) resolve({ value: this.queue.shift()!, done: false });
    else if (this.error) reject(this.error.reason);
    else resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: () =>
        new Promise<IteratorResult<string>>((resolve, reject) => {
          if (this.queue.length || this.finished) this.settle(resolve, reject);
          else this.waiting = { resolve, reject };
        }),
    };
  }
}

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}
