// Tokenizers as in transformers: AutoTokenizer.from_pretrained and a callable PreTrainedTokenizer
// (`tokenizer(text, {...})`, encode/decode/batch_decode, apply_chat_template).
//
// The tokenization itself (added-token splitting, normalizer, pre-tokenizer regex, byte-level BPE,
// post-processor, decoder) is @huggingface/tokenizers reading tokenizer.json; chat templates run on
// @huggingface/jinja. Written here is only what those two lack, each marked where it is done:
// padding and truncation (tokenizers.js has no batch API), transformers 5's decode defaults, the
// Python-Jinja behaviours the Llama 4 template relies on, and the transformers call conventions.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Environment, Interpreter, parse as parseJinja, tokenize as lexJinja } from "@huggingface/jinja";
import { Tokenizer as BackendTokenizer } from "@huggingface/tokenizers";

import { readJsonFile } from "./configuration_utils";
import { HUB_OPTION_KEYS, resolvePretrained, type PretrainedOptions } from "./hub";
import { Tensor } from "./tensor";
import { readTextFile } from "./utils/files";
import { checkAffordable } from "./utils/sizes";
import { checkOptions, closestName, describe, unknownOptionMessage, valueText } from "./utils/options";

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

export type PaddingStrategy = boolean | "longest" | "max_length" | "do_not_pad";
export type TruncationStrategy = boolean | "longest_first" | "only_first" | "do_not_truncate";
export type Side = "left" | "right";

/** Keyword arguments of `tokenizer(text, ...)` (transformers' `__call__`). */
export interface TokenizerCallOptions {
  /** Add the post-processor's special tokens (`<|begin_of_text|>` for Llama 4). Default true. */
  add_special_tokens?: boolean;
  /** true/"longest": pad to the longest row; "max_length": pad to max_length. Default false. */
  padding?: PaddingStrategy;
  /** true/"longest_first"/"only_first": cut each row to max_length (special tokens included). */
  truncation?: TruncationStrategy;
  /** Length for truncation and padding="max_length" (default: model_max_length). */
  max_length?: number | null;
  /** Round padded lengths up to a multiple of this. */
  pad_to_multiple_of?: number | null;
  /** Overrides tokenizer.padding_side for this call. */
  padding_side?: Side;
  /** "pt": return int32 Tensors of shape [batch, seq] instead of arrays. */
  return_tensors?: "pt" | null;
  /** Default true. */
  return_attention_mask?: boolean;
}

/** What `tokenizer(...)` returns: transformers' BatchEncoding with the two model inputs. Spread it
 * into a model call (`model.generate({ ...inputs, max_new_tokens: 20 })`): only the data fields are
 * own enumerable properties. */
export class BatchEncoding<T = number[] | number[][] | Tensor> {
  input_ids: T;
  /** 1 for tokens, 0 for padding. Absent only when return_attention_mask is false. */
  attention_mask!: T;

  constructor(input_ids: T, attention_mask?: T) {
    this.input_ids = input_ids;
    if (attention_mask !== undefined) this.attention_mask = attention_mask;
    else delete (this as { attention_mask?: T }).attention_mask;
  }

  /** As BatchEncoding.to(device) in Python: tensors stay in CPU memory, so this checks the device. */
  to(device: string): this {
    if (this.input_ids instanceof Tensor) this.input_ids.to(device);
    else if (device !== "cpu" && device !== "auto") {
      throw new Error(`BatchEncoding.to: device "${device}" is not available (this engine runs on "cpu")`);
    }
    return this;
  }
}

/** One part of a message's content list. */
export type MessageContentPart =
  | { type: "text"; text: string; [key: string]: unknown }
  | { type: "image"; [key: string]: unknown }
  | { type: string; [key: string]: unknown };

export interface ToolCall {
  type?: "function";
  function: { name: string; arguments: Record<string, unknown> | string };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: string;
  /** A string, or a list of {type: "text", text} / {type: "image"} parts. May be omitted only on an
   * assistant message carrying tool_calls; a tool result may also be an object. */
  content?: string | MessageContentPart[] | Record<string, unknown> | null;
  tool_calls?: ToolCall[] | null;
  [key: string]: unknown;
}

/** Keyword arguments of apply_chat_template. Any other key is passed to the template as a variable
 * (e.g. Llama 4's `tools_in_user_message`, `date_string`, `custom_tools`), as Python's **kwargs are. */
export interface ChatTemplateOptions {
  add_generation_prompt?: boolean;
  /** Leave the last message open (no end-of-turn) so the model continues it. */
  continue_final_message?: boolean | string;
  /** Default true: return token ids; false returns the rendered string. */
  tokenize?: boolean;
  /** Default true (as in transformers 5): with tokenize, return {input_ids, attention_mask};
   * false returns the input_ids alone. */
  return_dict?: boolean;
  return_tensors?: "pt" | null;
  padding?: PaddingStrategy;
  truncation?: boolean;
  max_length?: number | null;
  /** JSON schemas of the tools (functions cannot be converted to schemas in TypeScript). */
  tools?: Record<string, unknown>[] | null;
  documents?: Record<string, unknown>[] | null;
  /** A template string, or the name of one of the tokenizer's named templates. */
  chat_template?: string | null;
  /** More options for the tokenizer call. */
  tokenizer_kwargs?: TokenizerCallOptions;
  [templateVariable: string]: unknown;
}

export interface DecodeOptions {
  skip_special_tokens?: boolean;
  /** Default: the tokenizer's setting (false). As in transformers 5, never applied to BPE models
   * unless clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output is set. */
  clean_up_tokenization_spaces?: boolean | null;
}

/** from_pretrained options: the Hub options plus tokenizer settings that override tokenizer_config.json. */
export interface TokenizerFromPretrainedOptions extends PretrainedOptions {
  padding_side?: Side;
  truncation_side?: Side;
  model_max_length?: number;
  clean_up_tokenization_spaces?: boolean;
  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  pad_token?: string;
  chat_template?: string;
}

// ---------------------------------------------------------------------------------------------
// Option names
// ---------------------------------------------------------------------------------------------

const CALL_KEYS = ["add_special_tokens", "padding", "truncation", "max_length", "pad_to_multiple_of", "padding_side",
  "return_tensors", "return_attention_mask"] as const;
const DECODE_KEYS = ["skip_special_tokens", "clean_up_tokenization_spaces"] as const;
const CHAT_KEYS = ["add_generation_prompt", "continue_final_message", "tokenize", "return_dict", "return_tensors",
  "padding", "truncation", "max_length", "tools", "documents", "chat_template", "tokenizer_kwargs"] as const;
/** Options of apply_chat_template that transformers has and this port does not. */
const CHAT_UNSUPPORTED = ["sanitize_control_tokens", "return_assistant_tokens_mask"];
const INIT_KEYS = ["padding_side", "truncation_side", "model_max_length", "clean_up_tokenization_spaces", "bos_token",
  "eos_token", "unk_token", "pad_token", "chat_template"] as const;
const SPECIAL_TOKENS_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
  "mask_token"] as const;
type SpecialTokenName = (typeof SPECIAL_TOKENS_ATTRIBUTES)[number];

/** transformers' VERY_LARGE_INTEGER: the model_max_length of a tokenizer that sets none. */
const VERY_LARGE_INTEGER = 1e30;

const TOKENIZER_FILES = {
  required: ["tokenizer.json"],
  optional: ["tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"],
};

// ---------------------------------------------------------------------------------------------
// Callable instances
// ---------------------------------------------------------------------------------------------

/**
 * Base class whose instances are functions, so that a tokenizer is called as in Python:
 * `tokenizer(text)` runs `tokenizer.__call__(text)`. The constructor returns an arrow function whose
 * prototype is the subclass's prototype; in a derived class `this` is whatever super() returned, so
 * fields and methods land on that function and `instanceof` holds. Its own `name` and `length`
 * properties are removed so that they do not shadow anything. The call signatures are declared by
 * an interface merged with the subclass.
 */
export class CallableInstance {
  constructor() {
    const fn = (...args: unknown[]) => (fn as unknown as { __call__(...a: unknown[]): unknown }).__call__(...args);
    delete (fn as { name?: string }).name;
    delete (fn as { length?: number }).length;
    return Object.setPrototypeOf(fn, new.target.prototype);
  }
}

// ---------------------------------------------------------------------------------------------
// Chat templates on @huggingface/jinja
// ---------------------------------------------------------------------------------------------

type JinjaProgram = ReturnType<typeof parseJinja>;
const compiledTemplates = new Map<string, JinjaProgram>();

function compileTemplate(source: string): JinjaProgram {
  let program = compiledTemplates.get(source);
  if (!program) {
    try {
      // transformers compiles chat templates with trim_blocks and lstrip_blocks.
      program = parseJinja(lexJinja(source, { trim_blocks: true, lstrip_blocks: true }));
    } catch (err) {
      throw new Error(`apply_chat_template: cannot parse the chat template (${(err as Error).message})`);
    }
    if (compiledTemplates.size > 32) compiledTemplates.clear();
    compiledTemplates.set(source, program);
  }
  return program;
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
  "November", "December"];
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** Python's datetime.now().strftime in the C locale, for the templates' strftime_now. Written here
 * because @huggingface/jinja's version formats month names in the host locale and knows only a few
 * directives. */
function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const hour12 = date.getHours() % 12 === 0 ? 12 : date.getHours() % 12;
  const startOfYear = new Date(date.getFullYear(), 0, 1);
  const dayOfYear = Math.floor((date.getTime() - startOfYear.getTime()) / 86_400_000) + 1;
  return format.replace(/%([aAbBdHIjmMpSyYe%])/g, (_, code: string) => {
    switch (code) {
      case "a": return DAYS[date.getDay()].slice(0, 3);
      case "A": return DAYS[date.getDay()];
      case "b": return MONTHS[date.getMonth()].slice(0, 3);
      case "B": return MONTHS[date.getMonth()];
      case "d": return pad(date.getDate());
      case "e": return String(date.getDate()).padStart(2, " ");
      case "H": return pad(date.getHours());
      case "I": return pad(hour12);
      case "j": return pad(dayOfYear, 3);
      case "m": return pad(date.getMonth() + 1);
      case "M": return pad(date.getMinutes());
      case "p": return date.getHours() < 12 ? "AM" : "PM";
      case "S": return pad(date.getSeconds());
      case "y": return pad(date.getFullYear() % 100);
      case "Y": return String(date.getFullYear());
      default: return "%";
    }
  });
}

// Limits of one rendering. Templates come from downloaded repos, so a runaway loop or an exploding string must
// end in an error naming the template rather than take the process down (a huge range() is a fatal V8 error).
// The bounds are far above what a chat template needs: the Llama 4 one renders a 1,000-message chat in ~30,000 steps.
// A step is a node evaluated or an item of a list made or iterated (a loop over a list costs its length).
const TEMPLATE_LIMITS = { items: 1_000_000, outputChars: 64 * 2 ** 20, steps: 2_000_000, seconds: 10 };

class TemplateLimitError extends Error {}

function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() arg 3 must not be zero");
  const length = Math.max(0, Math.ceil((stop - start) / step));
  if (!(length <= TEMPLATE_LIMITS.items)) {
    throw new TemplateLimitError(`range(${start}, ${stop}, ${step}) would make ${length} items, more than the ${TEMPLATE_LIMITS.items} a template may`);
  }
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

interface ForNode {
  iterable: { type: string; lhs?: unknown };
}

/** Renders a chat template with the variables transformers gives it; `name` says which template in errors. */
function renderTemplate(source: string, variables: Record<string, unknown>, name: string): string {
  const program = compileTemplate(source);
  // The globals of transformers' sandbox. Template variables go in a child scope so that a variable
  // may shadow a global (Python allows it; @huggingface/jinja's Template.render would throw).
  const globals = new Environment();
  for (const [name, value] of [["false", false], ["true", true], ["none", null], ["False", false], ["True", true], ["None", null]] as const) {
    globals.set(name, value);
  }
  globals.set("raise_exception", (message: unknown) => {
    throw new Error(`apply_chat_template: the chat template raised an error: ${String(message)}`);
  });
  globals.set("strftime_now", (format: unknown) => strftime(new Date(), String(format)));
  globals.set("range", pythonRange);
  const scope = new Environment(globals);
  for (const [name, value] of Object.entries(variables)) scope.set(name, value);

  const interpreter = new Interpreter(scope) as unknown as {
    run(p: JinjaProgram): { value: unknown };
    evaluate(node: unknown, env: Environment): { value: unknown };
    evaluateFor(node: ForNode, env: Environment): unknown;
  };
  // Every node goes through evaluate(): count the steps, watch the clock, and bound each value's size.
  const evaluate = interpreter.evaluate.bind(interpreter);
  const deadline = Date.now() + TEMPLATE_LIMITS.seconds * 1000;
  let steps = 0;
  interpreter.evaluate = (node, env) => {
    if (++steps > TEMPLATE_LIMITS.steps) throw new TemplateLimitError(`more than ${TEMPLATE_LIMITS.steps} evaluation steps`);
    if (Date.now() > deadline) throw new TemplateLimitError(`still rendering after ${TEMPLATE_LIMITS.seconds} s`);
    const result = evaluate(node, env);
    const value = result?.value;
    if (Array.isArray(value)) steps += value.length;
    if (typeof value === "string" && value.length > TEMPLATE_LIMITS.outputChars) {
      throw new TemplateLimitError(`a string of ${value.length} characters, more than ${TEMPLATE_LIMITS.outputChars}`);
    }
    if (Array.isArray(value) && value.length > TEMPLATE_LIMITS.items) {
      throw new TemplateLimitError(`a list of ${value.length} items, more than ${TEMPLATE_LIMITS.items}`);
    }
    return result;
  };
  // Python's Jinja iterates an undefined value as an empty sequence; @huggingface/jinja throws.
  // The Llama 4 template relies on it: it loops over `message['content']` of an assistant tool-call
  // message, which has no content. The error is thrown before the loop body runs, so the loop is
  // evaluated again over an empty list (which also renders a `{% else %}` block, as Python does).
  // Nested loops go through this same instance method, so the error can only be this loop's own.
  const evaluateFor = interpreter.evaluateFor.bind(interpreter);
  interpreter.evaluateFor = (node, env) => {
    try {
      return evaluateFor(node, env);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.endsWith("in for loop: got UndefinedValue")) throw err;
      const empty = { type: "ArrayLiteral", value: [] };
      const iterable = node.iterable.type === "SelectExpression" ? { ...node.iterable, lhs: empty } : empty;
      return evaluateFor({ ...node, iterable } as ForNode, env);
    }
  };
  let result: { value: unknown };
  try {
    result = interpreter.run(program);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (err instanceof TemplateLimitError) throw new Error(`apply_chat_template: ${name} exceeds the rendering limits: ${message}`);
    if (message.startsWith("apply_chat_template:")) throw err;
    throw new Error(`apply_chat_template: rendering ${name} failed: ${message}`);
  }
  return String(result.value);
}

/** Drops null/undefined keys of each message (transformers does: templates handle a missing key
 * better than a None), copies reasoning fields to the names templates read, and checks the shape. */
function normalizeConversation(conversation: unknown, where: string): Record<string, unknown>[] {
  if (!Array.isArray(conversation)) {
    throw new TypeError(`apply_chat_template: ${where} must be an array of messages, got ${describe(conversation)}`);
  }
  if (conversation.length === 0) {
    throw new Error("apply_chat_template: cannot apply the chat template to an empty conversation; provide at least one message");
  }
  return conversation.map((message: unknown, i: number) => {
    const at = `${where === "conversation" ? "" : where + " "}message ${i}`;
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      throw new TypeError(`apply_chat_template: ${at} must be an object with 'role' and 'content', got ${describe(message)}`);
    }
    checkPlainData(message, `apply_chat_template: ${at}`);
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(message)) if (value !== null && value !== undefined) out[key] = value;
    if (typeof out.role !== "string" || out.role.length === 0) {
      throw new Error(`apply_chat_template: ${at} has no 'role' (a string such as "user", "assistant" or "system")`);
    }
    if (!("content" in out)) {
      if (!Array.isArray(out.tool_calls)) {
        throw new Error(`apply_chat_template: ${at} (role '${out.role}') has no 'content'`);
      }
    } else if (Array.isArray(out.content)) {
      out.content.forEach((part: unknown, j: number) => {
        if (part === null || typeof part !== "object" || Array.isArray(part) || typeof (part as { type?: unknown }).type !== "string") {
          throw new TypeError(`apply_chat_template: ${at} content part ${j} must be an object with a 'type' ("text" or "image"), got ${describe(part)}`);
        }
        if ((part as { type: string }).type === "text" && typeof (part as { text?: unknown }).text !== "string") {
          throw new TypeError(`apply_chat_template: ${at} content part ${j} is {type: "text"} without a string 'text'`);
        }
      });
    } else if (typeof out.content !== "string" && typeof out.content !== "object") {
      throw new TypeError(`apply_chat_template: ${at} content must be a string or a list of {type, ...} parts, got ${describe(out.content)}`);
    }
    // transformers' _alias_reasoning_fields
    const reasoning = ["reasoning_content", "thinking", "reasoning"].map((k) => out[k]).find((v) => v !== undefined);
    if (reasoning !== undefined) return { thinking: reasoning, ...out, reasoning_content: reasoning };
    return out;
  });
}

const CONTINUE_FINAL_MESSAGE_TAG = "CONTINUE_FINAL_MESSAGE_TAG ";

/** Messages, tools and documents reach the template as JSON-like data: a value that contains itself, or nests
 * deeper than any JSON a chat holds, would overflow the stack while it is converted. */
function checkPlainData(value: unknown, where: string, path = "", ancestors: object[] = []): void {
  if (value === null || typeof value !== "object") return;
  if (ancestors.includes(value)) throw new TypeError(`${where}${path} refers to itself (a circular structure); messages must be plain JSON-like data`);
  if (ancestors.length >= 64) throw new TypeError(`${where}${path} nests more than 64 levels deep`);
  ancestors.push(value);
  for (const [key, child] of Object.entries(value)) checkPlainData(child, where, `${path}${Array.isArray(value) ? `[${key}]` : `.${key}`}`, ancestors);
  ancestors.pop();
}


/** A special-token entry of tokenizer_config.json: a string or a serialized AddedToken. */
function tokenContent(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return null;
}

type ChatTemplates = string | Record<string, string> | null;

function templatesFrom(value: unknown, path: string): ChatTemplates {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named: Record<string, string> = {};
    for (const entry of value) {
      const { name, template } = (entry ?? {}) as { name?: unknown; template?: unknown };
      if (typeof name !== "string" || typeof template !== "string") throw new Error(`${path}: chat_template entries need a string name and template`);
      named[name] = template;
    }
    return named;
  }
  throw new Error(`${path}: chat_template must be a string or a list of {name, template}`);
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

/** Call signatures of a tokenizer instance (merged into the class). */
export interface PreTrainedTokenizer {
  (text: string, options?: TokenizerCallOptions & { return_tensors?: null }): BatchEncoding<number[]>;
  (text: string[], options?: TokenizerCallOptions & { return_tensors?: null }): BatchEncoding<number[][]>;
  (text: string | string[], options: TokenizerCallOptions & { return_tensors: "pt" }): BatchEncoding<Tensor>;
  (text: string | string[], options?: TokenizerCallOptions): BatchEncoding;
}

/**
 * A tokenizer loaded from tokenizer.json (transformers 5's TokenizersBackend, a.k.a.
 * PreTrainedTokenizerFast). Call it like the Python object: `tokenizer(text)`,
 * `tokenizer([a, b], { padding: true, return_tensors: "pt" })`.
 */
export class PreTrainedTokenizer extends CallableInstance {
  /** The directory or Hub id it was loaded from. */
  readonly name_or_path: string;
  /** Longest input the model accepts (tokenizer_config's model_max_length). */
  model_max_length: number;
  readonly model_input_names: string[];
  clean_up_tokenization_spaces: boolean;
  /** tokenizer_config's chat template(s): a string, named templates, or null. */
  chat_template: string | Record<string, string> | null;

  private readonly backend: BackendTokenizer;
  private readonly isBpe: boolean;
  private readonly cleanUpBpe: boolean;
  private readonly vocabSize: number;
  private readonly fullSize: number;
  private readonly specialTokenIds: Set<number>;
  /** Ids the post-processor puts before/after one sequence (Llama 4: [<|begin_of_text|>] / []). */
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  private readonly named = new Map<SpecialTokenName, string>();
  private readonly extraSpecialTokens: string[];
  private _padding_side: Side;
  private _truncation_side: Side;

  /** Builds a tokenizer from parsed tokenizer.json / tokenizer_config.json contents; most code
   * wants `AutoTokenizer.from_pretrained(dir)`. */
  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown> = {}, name_or_path = "") {
    super();
    this.name_or_path = name_or_path;
    checkTokenizerJson(tokenizerJson, name_or_path ? join(name_or_path, "tokenizer.json") : "tokenizer.json");
    const config = tokenizerConfig;
    for (const attr of SPECIAL_TOKENS_ATTRIBUTES) {
      const content = tokenContent(config[attr]);
      if (content !== null) this.named.set(attr, content);
    }
    const extra = config.extra_special_tokens ?? config.additional_special_tokens;
    this.extraSpecialTokens = (Array.isArray(extra) ? extra : extra && typeof extra === "object" ? Object.values(extra) : [])
      .map(tokenContent)
      .filter((t): t is string => t !== null);

    // As transformers does on load, a special token named in the config but absent from the
    // vocabulary becomes an added token at the next free id.
    const json = { ...tokenizerJson, added_tokens: [...((tokenizerJson.added_tokens as unknown[]) ?? [])] } as {
      added_tokens: { id: number; content: string }[];
      model?: { type?: string; vocab?: unknown };
    };
    const model = json.model ?? {};
    const modelVocab = model.vocab;
    const inModel = (t: string) =>
      modelVocab !== null && typeof modelVocab === "object" && (Array.isArray(modelVocab)
        ? modelVocab.some((e) => Array.isArray(e) && e[0] === t)
        : Object.prototype.hasOwnProperty.call(modelVocab, t));
    const known = (t: string) => json.added_tokens.some((a) => a.content === t) || inModel(t);
    let nextId = json.added_tokens.reduce((m, a) => Math.max(m, a.id + 1), modelSize(modelVocab));
    for (const token of [...this.named.values(), ...this.extraSpecialTokens]) {
      if (!known(token)) {
        json.added_tokens.push({ id: nextId++, content: token, single_word: false, lstrip: false, rstrip: false,
          normalized: false, special: true } as { id: number; content: string });
      }
    }

    // transformers 5 does not clean up tokenization spaces by default; tokenizers.js does, so the
    // default is passed explicitly and every decode states its choice.
    this.backend = new BackendTokenizer(json, { ...config, clean_up_tokenization_spaces: false });
    this.isBpe = model.type === "BPE";
    this.cleanUpBpe = config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true;
    this.clean_up_tokenization_spaces = config.clean_up_tokenization_spaces === true;
    this.model_max_length = typeof config.model_max_length === "number" ? config.model_max_length : VERY_LARGE_INTEGER;
    this.model_input_names = Array.isArray(config.model_input_names) ? (config.model_input_names as string[]) : ["input_ids", "attention_mask"];
    this._padding_side = checkSide("padding_side", config.padding_side ?? "right");
    this._truncation_side = checkSide("truncation_side", config.truncation_side ?? "right");
    this.chat_template = templatesFrom(config.chat_template, "tokenizer_config.json");

    const withAdded = this.backend.get_vocab(true);
    this.fullSize = withAdded.size;
    this.vocabSize = modelVocab ? modelSize(modelVocab) : this.backend.get_vocab(false).size;
    this.specialTokenIds = new Set([...this.backend.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));

    // The post-processor's special tokens around one sequence, found by encoding a probe with and
    // without them; truncation cuts the text's ids and keeps these, as the Rust tokenizer does.
    const probe = "a";
    const bare = this.backend.encode(probe, { add_special_tokens: false }).ids;
    const full = this.backend.encode(probe, { add_special_tokens: true }).ids;
    if (![...bare, ...full].every((id) => Number.isInteger(id))) {
      throw new Error(`${name_or_path ? join(name_or_path, "tokenizer.json") : "tokenizer.json"}: encoding a probe text gives ids ` +
        `[${full.join(", ")}]: a special token of the post_processor or a piece of the text is not in the vocabulary`);
    }
    let at = -1;
    for (let i = 0; i + bare.length <= full.length && at < 0; i++) {
      if (bare.every((id, k) => full[i + k] === id)) at = i;
    }
    if (at < 0) throw new Error(`${name_or_path || "tokenizer"}: cannot locate the text within the post-processor's output`);
    this.prefixIds = full.slice(0, at);
    this.suffixIds = full.slice(at + bare.length);
  }

  /** Loads tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, chat_template.jinja /
   * chat_template.json) from a directory or a Hub repo. */
  static async from_pretrained(pathOrId: string, options: TokenizerFromPretrainedOptions = {}): Promise<PreTrainedTokenizer> {
    checkOptions("from_pretrained", options, [...HUB_OPTION_KEYS, ...INIT_KEYS]);
    const dir = await resolvePretrained(pathOrId, TOKENIZER_FILES, options);
    const file = (name: string) => join(dir, name);
    if (!existsSync(file("tokenizer.json"))) throw new Error(`${dir}: missing tokenizer.json`);
    const config: Record<string, unknown> = existsSync(file("tokenizer_config.json")) ? readJsonFile(file("tokenizer_config.json")) : {};
    if (existsSync(file("special_tokens_map.json"))) {
      const map = readJsonFile(file("special_tokens_map.json"));
      for (const [key, value] of Object.entries(map)) if (config[key] === undefined) config[key] = value;
    }
    if (existsSync(file("chat_template.jinja"))) {
      config.chat_template = readTextFile(file("chat_template.jinja"));
    } else if (existsSync(file("chat_template.json"))) {
      config.chat_template = readJsonFile(file("chat_template.json")).chat_template;
    }
    for (const key of INIT_KEYS) {
      const value = (options as Record<string, unknown>)[key];
      if (value !== undefined) config[key] = value;
    }
    const json = readJsonFile(file("tokenizer.json"));
    try {
      return new this(json, config, pathOrId);
    } catch (err) {
      // The tokenizers library's own errors ("x.map is not a function") name no file: say which files built it.
      const message = (err as Error)?.message ?? String(err);
      if (message.includes("tokenizer.json") || message.includes("tokenizer_config.json")) throw err;
      throw new Error(`${dir}: cannot build the tokenizer from tokenizer.json and tokenizer_config.json: ${message}`, { cause: err });
    }
  }

  // ----- special tokens ------------------------------------------------------------------------

  get bos_token(): string | null { return this.named.get("bos_token") ?? null; }
  set bos_token(token: string | null) { this.setSpecial("bos_token", token); }
  get eos_token(): string | null { return this.named.get("eos_token") ?? null; }
  set eos_token(token: string | null) { this.setSpecial("eos_token", token); }
  get unk_token(): string | null { return this.named.get("unk_token") ?? null; }
  set unk_token(token: string | null) { this.setSpecial("unk_token", token); }
  get pad_token(): string | null { return this.named.get("pad_token") ?? null; }
  set pad_token(token: string | null) { this.setSpecial("pad_token", token); }
  get sep_token(): string | null { return this.named.get("sep_token") ?? null; }
  get cls_token(): string | null { return this.named.get("cls_token") ?? null; }
  get mask_token(): string | null { return this.named.get("mask_token") ?? null; }

  get bos_token_id(): number | null { return this.idOrNull(this.bos_token); }
  get eos_token_id(): number | null { return this.idOrNull(this.eos_token); }
  get unk_token_id(): number | null { return this.idOrNull(this.unk_token); }
  get pad_token_id(): number | null { return this.idOrNull(this.pad_token); }
  get sep_token_id(): number | null { return this.idOrNull(this.sep_token); }
  get cls_token_id(): number | null { return this.idOrNull(this.cls_token); }
  get mask_token_id(): number | null { return this.idOrNull(this.mask_token); }

  /** The named special tokens (bos_token, eos_token, ...) that are set, as in transformers 5. */
  get special_tokens_map(): Record<string, string> {
    const map: Record<string, string> = {};
    for (const attr of SPECIAL_TOKENS_ATTRIBUTES) {
      const token = this.named.get(attr);
      if (token !== undefined) map[attr] = token;
    }
    return map;
  }

  /** Named special tokens then the extra ones, without repeats (transformers 5's definition: the
   * other added tokens marked special are skipped by decode but not listed here). */
  get all_special_tokens(): string[] {
    return [...new Set([...Object.values(this.special_tokens_map), ...this.extraSpecialTokens])];
  }

  get all_special_ids(): number[] {
    return this.all_special_tokens.map((t) => this.backend.token_to_id(t) ?? (this.unk_token_id as number));
  }

  get padding_side(): Side { return this._padding_side; }
  set padding_side(side: Side) { this._padding_side = checkSide("padding_side", side); }
  get truncation_side(): Side { return this._truncation_side; }
  set truncation_side(side: Side) { this._truncation_side = checkSide("truncation_side", side); }

  /** Size of the base vocabulary, without added tokens (200000 for Llama 4). */
  get vocab_size(): number { return this.vocabSize; }

  /** Python's len(tokenizer): the vocabulary with the added tokens (201135 for Llama 4). */
  __len__(): number { return this.fullSize; }

  /** token -> id for the whole vocabulary, added tokens included. */
  get_vocab(): Map<string, number> {
    return this.backend.get_vocab(true);
  }

  // ----- tokens <-> ids ------------------------------------------------------------------------

  /** The byte-level BPE tokens of `text` (no special tokens unless add_special_tokens). */
  tokenize(text: string, options: { add_special_tokens?: boolean } = {}): string[] {
    checkOptions("tokenize", options, ["add_special_tokens"]);
    checkText("tokenize", text);
    return this.backend.tokenize(text, { add_special_tokens: options.add_special_tokens ?? false });
  }

  /** Ids of tokens; null for a token outside the vocabulary (unk_token_id if the tokenizer has one). */
  convert_tokens_to_ids(tokens: string): number | null;
  convert_tokens_to_ids(tokens: string[]): (number | null)[];
  convert_tokens_to_ids(tokens: string | string[]): number | null | (number | null)[] {
    const one = (t: unknown): number | null => {
      if (typeof t !== "string") throw new TypeError(`convert_tokens_to_ids expects strings, got ${describe(t)}`);
      return this.backend.token_to_id(t) ?? this.unk_token_id;
    };
    return Array.isArray(tokens) ? tokens.map(one) : one(tokens);
  }

  /** Tokens of ids; null for an id outside the vocabulary. */
  convert_ids_to_tokens(ids: number, options?: { skip_special_tokens?: boolean }): string | null;
  convert_ids_to_tokens(ids: number[] | Tensor, options?: { skip_special_tokens?: boolean }): (string | null)[];
  convert_ids_to_tokens(ids: number | number[] | Tensor, options: { skip_special_tokens?: boolean } = {}): string | null | (string | null)[] {
    checkOptions("convert_ids_to_tokens", options, ["skip_special_tokens"]);
    if (typeof ids === "number") return this.backend.id_to_token(checkId("convert_ids_to_tokens", ids)) ?? null;
    const list = toIdList(ids, "convert_ids_to_tokens");
    const kept = options.skip_special_tokens ? list.filter((id) => !this.specialTokenIds.has(id)) : list;
    return kept.map((id) => this.backend.id_to_token(id) ?? null);
  }

  // ----- encoding ------------------------------------------------------------------------------

  /** transformers' `tokenizer(text, ...)`; instances are callable, so `tokenizer(text)` is the same. */
  __call__(text: string | string[], options: TokenizerCallOptions = {}): BatchEncoding {
    checkOptions("tokenizer", options, CALL_KEYS);
    const batched = Array.isArray(text);
    const texts = batched ? text : [text];
    texts.forEach((t, i) => checkText("tokenizer", t, batched ? i : undefined));
    const plan = this.plan("tokenizer", options);
    const rows = texts.map((t) => this.encodeOne(t as string, plan));
    return this.finish("tokenizer", rows, plan, batched);
  }

  /** The input_ids of one text (transformers' encode). */
  encode(text: string, options: TokenizerCallOptions & { return_tensors: "pt" }): Tensor;
  encode(text: string, options?: TokenizerCallOptions): number[];
  encode(text: string, options: TokenizerCallOptions = {}): number[] | Tensor {
    checkOptions("encode", options, CALL_KEYS);
    checkText("encode", text);
    const plan = this.plan("encode", options);
    return this.finish("encode", [this.encodeOne(text, plan)], plan, false).input_ids as number[] | Tensor;
  }

  // ----- decoding ------------------------------------------------------------------------------

  /** Text of one sequence of ids (a number, an array, or a 1-D Tensor / [1, n] Tensor). Ids
   * outside the vocabulary are skipped, as the Rust tokenizer does. */
  decode(ids: number | number[] | Tensor, options: DecodeOptions = {}): string {
    checkOptions("decode", options, DECODE_KEYS);
    let list: number[];
    if (ids instanceof Tensor) {
      if (ids.dims.length > 2 || (ids.dims.length === 2 && ids.dims[0] !== 1)) {
        throw new Error(`decode expects one sequence, got a Tensor of dims [${ids.dims.join(", ")}]; use batch_decode`);
      }
      list = toIdList(ids, "decode");
    } else if (typeof ids === "number") {
      list = [checkId("decode", ids)];
    } else {
      list = toIdList(ids, "decode");
    }
    return this.decodeList(list, options);
  }

  /** Texts of a batch of sequences: number[][] or a 2-D Tensor. */
  batch_decode(sequences: number[][] | Tensor, options: DecodeOptions = {}): string[] {
    checkOptions("batch_decode", options, DECODE_KEYS);
    let rows: number[][];
    if (sequences instanceof Tensor) {
      if (sequences.dims.length !== 2) throw new Error(`batch_decode expects a 2-D Tensor [batch, seq], got dims [${sequences.dims.join(", ")}]`);
      rows = sequences.tolist() as number[][];
    } else if (Array.isArray(sequences)) {
      rows = sequences.map((row, i) => {
        if (!Array.isArray(row)) throw new TypeError(`batch_decode expects number[][] or a 2-D Tensor; row ${i} is ${describe(row)}`);
        return row;
      });
    } else {
      throw new TypeError(`batch_decode expects number[][] or a 2-D Tensor, got ${describe(sequences)}`);
    }
    return rows.map((row, i) => this.decodeList(toIdList(row, `batch_decode row ${i}`), options));
  }

  // ----- chat templates ------------------------------------------------------------------------

  /** Renders `conversation` (or a batch of conversations) with the chat template. tokenize=false
   * returns the text; otherwise, as in transformers 5, {input_ids, attention_mask} (return_dict,
   * the default) or the input_ids alone (return_dict: false). */
  apply_chat_template(conversation: ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string;
  apply_chat_template(conversation: ChatMessage[][], options: ChatTemplateOptions & { tokenize: false }): string[];
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ChatTemplateOptions & { return_dict: false; return_tensors: "pt" }): Tensor;
  apply_chat_template(conversation: ChatMessage[], options: ChatTemplateOptions & { return_dict: false }): number[];
  apply_chat_template(conversation: ChatMessage[][], options: ChatTemplateOptions & { return_dict: false }): number[][];
  apply_chat_template(conversation: ChatMessage[] | ChatMessage[][], options: ChatTemplateOptions & { return_tensors: "pt" }): BatchEncoding<Tensor>;
  apply_chat_template(conversation: ChatMessage[], options?: ChatTemplateOptions): BatchEncoding<number[]>;
  apply_chat_template(conversation: ChatMessage[][], options?: ChatTemplateOptions): BatchEncoding<number[][]>;
  apply_chat_template(
    conversation: ChatMessage[] | ChatMessage[][],
    options: ChatTemplateOptions = {},
  ): string | string[] | number[] | number[][] | Tensor | BatchEncoding {
    if (options === null || typeof options !== "object" || Array.isArray(options)) {
      throw new TypeError(`apply_chat_template: options must be an object, got ${describe(options)}`);
    }
    const {
      add_generation_prompt = false, continue_final_message = false, tokenize = true, return_dict = true,
      return_tensors = null, padding = false, truncation = false, max_length = null, tools = null,
      documents = null, chat_template = null, tokenizer_kwargs = {}, ...templateVariables
    } = options;
    const source = this.get_chat_template(chat_template, tools);
    for (const key of Object.keys(templateVariables)) {
      if (CHAT_UNSUPPORTED.includes(key)) {
        if (templateVariables[key] === false || templateVariables[key] === undefined) delete templateVariables[key];
        else throw new Error(`apply_chat_template: option '${key}' is not supported by this port`);
      } else if (!new RegExp(`\\b${key.replace(/[^A-Za-z0-9_]/g, "")}\\b`).test(source)) {
        // Other keys are template variables, as Python's **kwargs. A key the template never reads
        // that is close to an option name is a misspelt option.
        const near = closestName(key, [...CHAT_KEYS]);
        if (near !== undefined) throw new Error(unknownOptionMessage("apply_chat_template", key, CHAT_KEYS));
      }
    }
    if (tools !== null && (!Array.isArray(tools) || tools.some((t) => t === null || typeof t !== "object" || Array.isArray(t)))) {
      throw new TypeError("apply_chat_template: tools must be an array of JSON schema objects ({type: \"function\", function: {...}})");
    }
    if (documents !== null && (!Array.isArray(documents) || documents.some((d) => d === null || typeof d !== "object"))) {
      throw new TypeError("apply_chat_template: documents must be an array of objects with 'title' and 'text'");
    }
    checkOptions("apply_chat_template: tokenizer_kwargs", tokenizer_kwargs, CALL_KEYS);
    checkPlainData(tools, "apply_chat_template: tools");
    checkPlainData(documents, "apply_chat_template: documents");
    if (continue_final_message && add_generation_prompt) {
      throw new Error("apply_chat_template: continue_final_message and add_generation_prompt are not compatible; use continue_final_message to continue the final message, add_generation_prompt to start a new assistant message");
    }
    if (!Array.isArray(conversation)) {
      throw new TypeError(`apply_chat_template: conversation must be an array of messages, got ${describe(conversation)}`);
    }
    const batched = conversation.length > 0 && Array.isArray(conversation[0]);
    const conversations = (batched ? conversation : [conversation]).map((c, b) =>
      normalizeConversation(c, batched ? `conversation ${b}` : "conversation"));

    const rendered = conversations.map((chat) => {
      let finalText: string | undefined;
      if (continue_final_message) {
        const field = typeof continue_final_message === "string" ? continue_final_message : "content";
        const last = { ...chat[chat.length - 1] };
        const value = last[field];
        if (value === undefined) throw new Error(`apply_chat_template: continue_final_message is set but the final message has no "${field}" to continue`);
        if (Array.isArray(value)) {
          const parts = value.map((p) => ({ ...(p as Record<string, unknown>) }));
          const textPart = [...parts].reverse().find((p) => typeof p.text === "string");
          if (!textPart) throw new Error("apply_chat_template: continue_final_message is set but the final message has no text to continue");
          finalText = textPart.text as string;
          textPart.text = finalText + CONTINUE_FINAL_MESSAGE_TAG;
          last[field] = parts;
        } else {
          finalText = String(value);
          last[field] = finalText + CONTINUE_FINAL_MESSAGE_TAG;
        }
        chat = [...chat.slice(0, -1), last];
      }
      let text = renderTemplate(source, {
        ...this.special_tokens_map,
        ...templateVariables,
        messages: chat,
        tools,
        documents,
        add_generation_prompt,
      }, chat_template !== null ? "the chat_template option's template" : `the chat template of ${this.name_or_path || "this tokenizer"}`);
      if (finalText !== undefined) {
        const tag = CONTINUE_FINAL_MESSAGE_TAG.trim();
        if (!text.includes(finalText.trim()) || !text.includes(tag)) {
          throw new Error("apply_chat_template: continue_final_message is set but the final message does not appear in the rendered chat (the template changed it)");
        }
        const at = text.lastIndexOf(tag);
        text = text.slice(at, at + CONTINUE_FINAL_MESSAGE_TAG.length) === CONTINUE_FINAL_MESSAGE_TAG ? text.slice(0, at) : text.slice(0, at).trimEnd();
      }
      return text;
    });

    if (!tokenize) return batched ? rendered : rendered[0];
    const callOptions: TokenizerCallOptions = {
      padding, truncation, max_length, return_tensors, ...tokenizer_kwargs, add_special_tokens: false,
    };
    const out = this.__call__(batched ? rendered : rendered[0], callOptions);
    return return_dict ? out : (out.input_ids as number[] | number[][] | Tensor);
  }

  /** The template apply_chat_template uses (the tokenizer's, a named one, or `chat_template` itself). */
  get_chat_template(chat_template: string | null = null, tools: unknown = null): string {
    const own = this.chat_template;
    if (own !== null && typeof own === "object") {
      if (chat_template !== null && chat_template in own) return own[chat_template];
      if (chat_template === null) {
        if (tools !== null && "tool_use" in own) return own.tool_use;
        if ("default" in own) return own.default;
        throw new Error(`apply_chat_template: this tokenizer has several chat templates and no default; pass chat_template with one of: ${Object.keys(own).join(", ")}`);
      }
    }
    if (chat_template !== null) {
      if (typeof chat_template !== "string") throw new TypeError(`apply_chat_template: chat_template must be a string, got ${describe(chat_template)}`);
      return chat_template;
    }
    if (typeof own === "string") return own;
    throw new Error(`apply_chat_template: ${this.name_or_path || "this tokenizer"} has no chat template (no chat_template.jinja, chat_template.json or tokenizer_config.json chat_template) and none was passed`);
  }

  /** What console.log shows (the instance is a function, which Node would print as one). */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    const side = (s: string) => JSON.stringify(s);
    return `PreTrainedTokenizer(name_or_path=${side(this.name_or_path)}, vocab_size=${this.vocab_size}, ` +
      `len=${this.fullSize}, model_max_length=${this.model_max_length}, padding_side=${side(this._padding_side)}, ` +
      `truncation_side=${side(this._truncation_side)}, special_tokens=${JSON.stringify(this.special_tokens_map)})`;
  }

  // ----- internals -----------------------------------------------------------------------------

  private idOrNull(token: string | null): number | null {
    return token === null ? null : (this.backend.token_to_id(token) ?? null);
  }

  private setSpecial(attr: SpecialTokenName, token: string | null): void {
    if (token === null) {
      this.named.delete(attr);
      return;
    }
    if (typeof token !== "string") throw new TypeError(`${attr} must be a string, got ${describe(token)}`);
    if (this.backend.token_to_id(token) === undefined) {
      throw new Error(`${attr}: ${JSON.stringify(token)} is not in the vocabulary (adding new tokens is not supported); use an existing token, e.g. tokenizer.${attr} = tokenizer.eos_token`);
    }
    this.named.set(attr, token);
  }

  private decodeList(ids: number[], options: DecodeOptions): string {
    // Rust skips ids it has no token for; tokenizers.js would decode them as `undefined` and
    // throws on an empty list.
    const known = ids.filter((id) => id < this.fullSize && this.backend.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    let cleanUp = options.clean_up_tokenization_spaces ?? this.clean_up_tokenization_spaces;
    // transformers 5 ignores clean_up_tokenization_spaces for BPE models (it corrupts their output).
    if (cleanUp && this.isBpe && !this.cleanUpBpe) cleanUp = false;
    return this.backend.decode(known, { skip_special_tokens: options.skip_special_tokens === true, clean_up_tokenization_spaces: cleanUp });
  }

  /** transformers' _get_padding_truncation_strategies. */
  private plan(fnName: string, options: TokenizerCallOptions): Plan {
    const { add_special_tokens = true, padding = false, pad_to_multiple_of = null, padding_side = this._padding_side,
      return_tensors = null, return_attention_mask = true } = options;
    let { truncation, max_length = null } = options;
    if (typeof add_special_tokens !== "boolean") throw new TypeError(`${fnName}: add_special_tokens must be a boolean, got ${describe(add_special_tokens)}`);
    if (max_length !== null && (!Number.isInteger(max_length) || max_length < 0)) {
      throw new Error(`${fnName}: max_length must be a non-negative integer, got ${describe(max_length)}`);
    }
    if (pad_to_multiple_of !== null && (!Number.isInteger(pad_to_multiple_of) || pad_to_multiple_of <= 0)) {
      throw new Error(`${fnName}: pad_to_multiple_of must be a positive integer, got ${describe(pad_to_multiple_of)}`);
    }
    checkSide(`${fnName}: padding_side`, padding_side);
    if (return_tensors !== null && return_tensors !== "pt") {
      throw new Error(`${fnName}: return_tensors must be "pt" (int32 Tensors) or null, got ${describe(return_tensors)}`);
    }
    if (typeof return_attention_mask !== "boolean") throw new TypeError(`${fnName}: return_attention_mask must be a boolean`);

    // A max_length without padding or truncation means truncation, as in transformers.
    if (max_length !== null && padding === false && truncation === undefined) truncation = "longest_first";
    let pad: "longest" | "max_length" | null;
    if (padding === true || padding === "longest") pad = "longest";
    else if (padding === "max_length") pad = "max_length";
    else if (padding === false || padding === "do_not_pad") pad = null;
    else throw new Error(`${fnName}: padding must be true, false, "longest", "max_length" or "do_not_pad", got ${describe(padding)}`);
    let truncate: boolean;
    if (truncation === true || truncation === "longest_first" || truncation === "only_first") truncate = true;
    else if (truncation === undefined || truncation === null || truncation === false || truncation === "do_not_truncate") truncate = false;
    else throw new Error(`${fnName}: truncation must be true, false, "longest_first", "only_first" or "do_not_truncate", got ${describe(truncation)}`);

    if (max_length === null) {
      if (pad === "max_length") {
        if (this.model_max_length >= VERY_LARGE_INTEGER) pad = null;
        else max_length = this.model_max_length;
      }
      if (truncate) {
        if (this.model_max_length >= VERY_LARGE_INTEGER) truncate = false;
        else max_length = this.model_max_length;
      }
    }
    if (pad !== null && this.pad_token_id === null) {
      throw new Error(`${fnName}: asked to pad but the tokenizer has no pad_token; set one, e.g. tokenizer.pad_token = tokenizer.eos_token`);
    }
    if (truncate && pad !== null && pad_to_multiple_of !== null && max_length !== null && max_length % pad_to_multiple_of !== 0) {
      throw new Error(`${fnName}: truncation and padding are both activated but truncation length (${max_length}) is not a multiple of pad_to_multiple_of (${pad_to_multiple_of})`);
    }
    return { add_special_tokens, pad, truncate, max_length, pad_to_multiple_of, padding_side, return_tensors, return_attention_mask };
  }

  private encodeOne(text: string, plan: Plan): number[] {
    const encoded = this.backend.encode(text, { add_special_tokens: false });
    let ids = encoded.ids;
    const missing = ids.findIndex((id) => !Number.isInteger(id));
    if (missing >= 0) {
      // The Rust tokenizer fails the same way: a piece outside the vocabulary with no unk_token to stand for it.
      throw new Error(`${this.name_or_path ? join(this.name_or_path, "tokenizer.json") : "tokenizer.json"}: the text's piece ` +
        `${describe(encoded.tokens[missing])} is not in the vocabulary and model.unk_token names no token to use instead`);
    }
    const prefix = plan.add_special_tokens ? this.prefixIds : [];
    const suffix = plan.add_special_tokens ? this.suffixIds : [];
    // Truncation as the Rust tokenizer does it: the text's ids are cut to max_length minus the
    // special tokens, on truncation_side. (It leaves max_length 0 alone, and so do we.)
    if (plan.truncate && plan.max_length !== null && plan.max_length > 0) {
      const room = plan.max_length - prefix.length - suffix.length;
      if (room < 0) {
        throw new Error(`truncation: max_length ${plan.max_length} is shorter than the ${prefix.length + suffix.length} special tokens added to each sequence`);
      }
      if (ids.length > room) ids = this._truncation_side === "right" ? ids.slice(0, room) : ids.slice(ids.length - room);
    }
    return prefix.length || suffix.length ? [...prefix, ...ids, ...suffix] : ids;
  }

  /** Pads the rows and shapes the output as transformers does (flat lists for one text). */
  private finish(fnName: string, rows: number[][], plan: Plan, batched: boolean): BatchEncoding {
    let target: number | null = null;
    if (plan.pad === "longest") target = rows.reduce((m, r) => Math.max(m, r.length), 0);
    else if (plan.pad === "max_length") target = plan.max_length;
    if (target !== null && plan.pad_to_multiple_of !== null && target % plan.pad_to_multiple_of !== 0) {
      target = (Math.floor(target / plan.pad_to_multiple_of) + 1) * plan.pad_to_multiple_of;
    }
    if (target !== null) checkPaddedSize(fnName, rows.length, target);
    const padId = this.pad_token_id as number;
    const ids: number[][] = [];
    const masks: number[][] = [];
    for (const row of rows) {
      const missing = target === null ? 0 : Math.max(0, target - row.length);
      const fill = new Array<number>(missing).fill(padId);
      const zeros = new Array<number>(missing).fill(0);
      const ones = new Array<number>(row.length).fill(1);
      if (plan.padding_side === "left") {
        ids.push([...fill, ...row]);
        masks.push([...zeros, ...ones]);
      } else {
        ids.push([...row, ...fill]);
        masks.push([...ones, ...zeros]);
      }
    }
    const mask = plan.return_attention_mask ? masks : undefined;
    if (plan.return_tensors === "pt") {
      const width = ids.length ? ids[0].length : 0;
      if (ids.some((r) => r.length !== width)) {
        throw new Error(`${fnName}: unable to create a tensor from sequences of different lengths (${[...new Set(ids.map((r) => r.length))].join(", ")}); use padding: true (and truncation: true) to get batched tensors of one length`);
      }
      const tensor = (m: number[][]) => new Tensor("int32", Int32Array.from(m.flat()), [m.length, width]);
      return new BatchEncoding<Tensor>(tensor(ids), mask && tensor(mask));
    }
    if (!batched) return new BatchEncoding<number[]>(ids[0], mask && mask[0]);
    return new BatchEncoding<number[][]>(ids, mask);
  }
}

/** Refuses padding a batch to a length that cannot be held or afforded, before building the rows. */
function checkPaddedSize(fnName: string, rows: number, target: number): void {
  // Ids and mask as JS arrays and as int32 tensors: about 24 bytes a position.
  if (target > MAX_ROW_LENGTH) {
    throw new Error(`${fnName}: padding to ${target} positions: a row longer than ${MAX_ROW_LENGTH} ids cannot be held (check max_length / pad_to_multiple_of)`);
  }
  checkAffordable(rows * target * 24, `${fnName}: padding ${rows} row(s) to ${target} positions (max_length / pad_to_multiple_of)`);
}
/** Longest row a JS array holds (V8's FixedArray limit). */
const MAX_ROW_LENGTH = 2 ** 27 - 3;

interface Plan {
  add_special_tokens: boolean;
  pad: "longest" | "max_length" | null;
  truncate: boolean;
  max_length: number | null;
  pad_to_multiple_of: number | null;
  padding_side: Side;
  return_tensors: "pt" | null;
  return_attention_mask: boolean;
}

/** Ids past the entries that a tokenizer.json may leave unused: the tokenizers library indexes its vocabulary by
 * id, so an id of 2^31 would make it walk an array of that length. */
const MAX_UNUSED_IDS = 2 ** 20;

/** The structure of tokenizer.json that the tokenizers library relies on, checked so that a malformed file is
 * named in the error rather than failing inside the library. */
function checkTokenizerJson(json: Record<string, unknown>, file: string): void {
  const bad = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
  const model = json.model;
  if (!isObject(model)) bad(`"model" must be an object, got ${describe(model)}`);
  const m = model as Record<string, unknown>;
  if (m.type !== undefined && typeof m.type !== "string") bad(`"model.type" must be a string, got ${describe(m.type)}`);
  for (const key of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
    const v = json[key];
    if (v !== undefined && v !== null && !(isObject(v) && typeof v.type === "string")) bad(`"${key}" must be null or an object with a "type", got ${describe(v)}`);
  }
  let entries = 0;
  let maxId = -1;
  let maxToken = "";
  const checkId = (id: unknown, token: string, where: string) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= 2 ** 31) bad(`${where}: id of ${describe(token)} must be an integer in [0, 2^31), got ${valueText(id)}`);
    entries++;
    if ((id as number) > maxId) [maxId, maxToken] = [id as number, token];
  };
  const vocab = m.vocab;
  if (Array.isArray(vocab)) {
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number") bad(`"model.vocab"[${i}] must be a [token, score] pair, got ${describe(e)}`);
      checkId(i, e[0], "model.vocab");
    });
  } else if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) checkId(id, token, "model.vocab");
  } else if (vocab !== undefined) {
    bad(`"model.vocab" must be an object of token -> id (or a list of [token, score]), got ${describe(vocab)}`);
  }
  if (m.type === "BPE" && m.merges !== undefined && !Array.isArray(m.merges)) bad(`"model.merges" must be a list, got ${describe(m.merges)}`);
  if (Array.isArray(m.merges)) {
    m.merges.forEach((merge, i) => {
      const pair = Array.isArray(merge) ? merge.length === 2 && merge.every((p) => typeof p === "string") : typeof merge === "string";
      if (!pair) bad(`"model.merges"[${i}] must be "a b" or ["a", "b"], got ${describe(merge)}`);
    });
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) bad(`"added_tokens" must be a list, got ${describe(added)}`);
  (added as unknown[]).forEach((t, i) => {
    if (!isObject(t) || typeof t.content !== "string") bad(`"added_tokens"[${i}] must be an object with a string "content", got ${describe(t)}`);
    checkId((t as Record<string, unknown>).id, (t as Record<string, string>).content, `added_tokens[${i}]`);
  });
  if (maxId >= entries + MAX_UNUSED_IDS) {
    bad(`id ${maxId} of ${describe(maxToken)} is far past the ${entries} tokens: the vocabulary would be indexed up to it, leaving ${maxId + 1 - entries} ids unused (at most ${MAX_UNUSED_IDS} may be)`);
  }
}

function modelSize(vocab: unknown): number {
  if (Array.isArray(vocab)) return vocab.length;
  if (vocab && typeof vocab === "object") return Object.keys(vocab).length;
  return 0;
}

function checkSide(name: string, side: unknown): Side {
  if (side !== "left" && side !== "right") throw new Error(`${name} must be "left" or "right", got ${describe(side)}`);
  return side;
}

function checkText(fnName: string, text: unknown, index?: number): void {
  if (typeof text !== "string") {
    const where = index === undefined ? "" : ` (item ${index} of the batch)`;
    throw new TypeError(`${fnName}: text must be a string or an array of strings${where}, got ${describe(text)}`);
  }
}

function checkId(fnName: string, id: unknown): number {
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
    throw new TypeError(`${fnName}: token ids must be non-negative integers, got ${describe(id)}`);
  }
  return id;
}

function toIdList(ids: unknown, fnName: string): number[] {
  if (ids instanceof Tensor) return Array.from(ids.data as ArrayLike<number>, (v) => checkId(fnName, v));
  if (!Array.isArray(ids)) throw new TypeError(`${fnName}: expected an array of token ids or a Tensor, got ${describe(ids)}`);
  return ids.map((v) => checkId(fnName, v));
}

/** transformers' AutoTokenizer: every tokenizer here is a tokenizer.json tokenizer. */
export class AutoTokenizer {
  private constructor() {}

  /** Loads the tokenizer of a local directory or a Hub repo (tokenizer.json is required). */
  static async from_pretrained(pathOrId: string, options: TokenizerFromPretrainedOptions = {}): Promise<PreTrainedTokenizer> {
    return PreTrainedTokenizer.from_pretrained(pathOrId, options);
  }
}

/** transformers 5 names for the same class. */
export { PreTrainedTokenizer as PreTrainedTokenizerFast, PreTrainedTokenizer as TokenizersBackend };
