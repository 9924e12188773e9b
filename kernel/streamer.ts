// A generate() streamer that writes the generated text into the cell output in place: one output
// whose text grows as tokens come (update_display_data), instead of one stdout chunk per word.
//
//   await model.generate({ ...inputs, max_new_tokens: 200, streamer: new DisplayStreamer(tokenizer, { skip_prompt: true }) });
//
// It is the SDK's TextStreamer (same word-boundary and UTF-8 handling) with on_finalized_text
// sending a display update rather than writing to stdout.
import type { TokenDecoder } from "../sdk/generation/stopping_criteria";
import { TextStreamer, type TextStreamerOptions } from "../sdk/generation/streamers";
import { display, DisplayHandle, escapeHtml, inKernel, type MimeBundle } from "./display";
import { ProgressBar, Throttle } from "./progress";

export interface DisplayStreamerOptions extends TextStreamerOptions {
  /** Minimum time between two display updates. Default 50 ms. */
  min_interval_ms?: number;
  /** Show "N tokens, X tok/s" under the text. Default true. */
  show_stats?: boolean;
}

export class DisplayStreamer extends TextStreamer {
  /** The text streamed so far in the current generation. */
  text = "";
  /** Tokens received after the prompt in the current generation. */
  tokens = 0;
  private handle: DisplayHandle | null = null;
  private started = 0;
  private finished = false;
  private readonly throttle: Throttle;
  private readonly showStats: boolean;

  constructor(tokenizer: TokenDecoder, options: DisplayStreamerOptions = {}) {
    const { min_interval_ms, show_stats, ...textOptions } = options;
    super(tokenizer, textOptions);
    this.showStats = show_stats ?? true;
    this.throttle = new Throttle(() => this.render(), min_interval_ms ?? 50);
  }

  override put(tokenIds: number[]): void {
    const isPrompt = this.nextIsPrompt;
    if (isPrompt) {
      // A new generation: start a new output.
      this.text = "";
      this.tokens = 0;
      this.handle = null;
      this.finished = false;
      this.started = Date.now();
    } else {
      this.tokens += tokenIds.length;
    }
    super.put(tokenIds);
  }

  override on_finalized_text(text: string, streamEnd: boolean): void {
    this.text += text;
    if (streamEnd) {
      this.finished = true;
      this.throttle.flush();
      if (!inKernel()) process.stdout.write(this.text + "\n");
    } else if (text) {
      this.throttle.request();
    }
  }

  bundle(): MimeBundle {
    const seconds = Math.max(1e-3, (Date.now() - this.started) / 1000);
    const stats = `${this.tokens} tokens, ${(this.tokens / seconds).toFixed(1)} tok/s${this.finished ? "" : " ..."}`;
    const html = `<div class="llama4-ts-stream"><pre style="white-space:pre-wrap;margin:0">${escapeHtml(this.text)}</pre>` +
      (this.showStats ? `<div style="opacity:0.6;font-size:smaller">${escapeHtml(stats)}</div>` : "") + `</div>`;
    return { "text/plain": this.text, "text/html": html };
  }

  private render(): void {
    if (!inKernel()) return;
    if (this.handle) this.handle.update(this.bundle());
    else this.handle = display(this.bundle(), { display_id: true });
  }
}

export interface GenerationProgressOptions {
  /** The generate call's max_new_tokens: the bar's total. */
  max_new_tokens: number;
  /** Label in front of the bar. Default "generating". */
  description?: string;
  /** Minimum time between two display updates. Default 100 ms. */
  min_interval_ms?: number;
}

/**
 * A generate() streamer that shows a progress bar of the new tokens (count, tokens/s, time left
 * at max_new_tokens) in place, for generations too long to watch as text. Each generate with it
 * starts a new bar; the bar stays where the generation stopped (end of text or max_new_tokens).
 *
 *   await model.generate({ ...inputs, max_new_tokens: 256, streamer: new GenerationProgress({ max_new_tokens: 256 }) });
 */
export class GenerationProgress {
  /** Tokens received after the prompt in the current generation. */
  tokens = 0;
  private bar: ProgressBar | null = null;
  private nextIsPrompt = true;

  constructor(private readonly options: GenerationProgressOptions) {
    if (!Number.isInteger(options?.max_new_tokens) || options.max_new_tokens < 1) {
      throw new Error(`GenerationProgress: max_new_tokens must be a positive whole number, got ${options?.max_new_tokens}`);
    }
  }

  put(tokenIds: number[]): void {
    if (this.nextIsPrompt) {
      // generate's first put is the prompt: a new generation, a new bar.
      this.nextIsPrompt = false;
      this.tokens = 0;
      this.bar = new ProgressBar({ total: this.options.max_new_tokens, unit: "tokens", description: this.options.description ?? "generating",
        min_interval_ms: this.options.min_interval_ms });
      return;
    }
    this.tokens += tokenIds.length;
    this.bar?.set(this.tokens);
  }

  end(): void {
    this.bar?.close();
    this.bar = null;
    this.nextIsPrompt = true;
  }
}
