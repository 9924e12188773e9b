#!/usr/bin/env node
// llama4-ts command line: quick generation and chat outside notebooks, streaming tokens.
//   llama4-ts generate "Once upon a time" [--max-new-tokens 64] [--do-sample] [--temperature 0.7] [--seed 1]
//   llama4-ts chat [--system "You are terse."]
// Both take --model ID|DIR (default: $LLAMA4_TS_MODEL, else the embedded model), --dtype, and
// --image PATH|URL (repeatable) for a multimodal checkpoint: the images and the prompt (or the first
// chat line) make one user message through the chat template, as the image-text-to-text pipeline
// does for a chat; an instruct model answers it (a bare continuation after an image is nonsense).
import { createInterface } from "node:readline";
import { parseArgs, type ParseArgsConfig } from "node:util";

import { default_model } from "./embedded";
import { TextStreamer } from "./generation/streamers";
import { Llama4ForCausalLM, Llama4ForConditionalGeneration } from "./models/llama4/modeling_llama4";
import { AutoTokenizer, ChatMessage } from "./tokenization_utils";
import { AutoProcessor } from "./models/auto/processing_auto";
import { resolvePretrained } from "./hub";
import { readJsonFile } from "./configuration_utils";
import { set_seed } from "./utils/random";
import { closestName } from "./utils/options";
import { join } from "node:path";

const USAGE = `usage:
  llama4-ts generate "prompt" [options]   continue a prompt
  llama4-ts chat [options]                talk to the model (chat template); an empty line or Ctrl-D ends
options:
  --model ID|DIR        checkpoint (default: $LLAMA4_TS_MODEL, else the embedded model)
  --dtype NAME          auto | float32 | bfloat16 | float16 (default auto)
  --max-new-tokens N    default 128
  --do-sample           sample instead of greedy decoding
  --temperature T       with --do-sample (default 0.7)
  --top-p P             with --do-sample
  --seed N              makes sampling reproducible
  --system TEXT         chat: a system message
  --image PATH|URL      an image for the prompt / first chat message (repeat for several); generate
                        then answers the prompt as a chat message about the image(s)`;

const OPTIONS = {
  model: { type: "string" },
  dtype: { type: "string", default: "auto" },
  "max-new-tokens": { type: "string", default: "128" },
  "do-sample": { type: "boolean", default: false },
  temperature: { type: "string", default: "0.7" },
  "top-p": { type: "string" },
  seed: { type: "string" },
  system: { type: "string" },
  image: { type: "string", multiple: true, default: [] as string[] },
  help: { type: "boolean", short: "h", default: false },
} satisfies NonNullable<ParseArgsConfig["options"]>;

/** parseArgs, with "did you mean" for a mistyped flag (the SDK's options use the same closestName). */
function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    const flag = (e as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? /'(-[^']*)'/.exec((e as Error).message)?.[1] : undefined;
    if (!flag) throw e;
    const suggestion = closestName(flag.replace(/^-+/, ""), Object.keys(OPTIONS));
    throw new Error(`unknown option '${flag}'${suggestion ? ` (did you mean '--${suggestion}'?)` : ""}\n${USAGE}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 1;
  }
  if (command !== "generate" && command !== "chat") {
    console.error(`llama4-ts: unknown command "${command}"\n${USAGE}`);
    return 1;
  }
  const modelId = values.model ?? default_model();
  const maxNew = Number(values["max-new-tokens"]);
  if (!Number.isInteger(maxNew) || maxNew < 1) throw new Error(`--max-new-tokens must be a positive integer, got ${values["max-new-tokens"]}`);
  if (values.seed !== undefined) set_seed(Number(values.seed));
  const sampling = values["do-sample"]
    ? { do_sample: true, temperature: Number(values.temperature), ...(values["top-p"] ? { top_p: Number(values["top-p"]) } : {}) }
    : { do_sample: false };

  const images = values.image as string[];
  const dir = await resolvePretrained(modelId, { required: ["config.json"] });
  const Model = "text_config" in readJsonFile(join(dir, "config.json")) ? Llama4ForConditionalGeneration : Llama4ForCausalLM;
  const [tokenizer, model] = await Promise.all([AutoTokenizer.from_pretrained(modelId), Model.from_pretrained(modelId, { dtype: values.dtype })]);
  // Images need the processor (and a checkpoint with a vision tower, which it checks).
  const processor = images.length ? await AutoProcessor.from_pretrained(modelId, { tokenizer }) : null;
  const streamer = new TextStreamer(tokenizer, { skip_prompt: true, skip_special_tokens: true });

  if (command === "generate") {
    const prompt = rest.join(" ");
    if (!prompt) throw new Error('generate needs a prompt: llama4-ts generate "Once upon a time"');
    if (processor) {
      // With images: one chat message (images, then the prompt), answered after the generation prompt.
      const message: ChatMessage = { role: "user", content: [...images.map((path) => ({ type: "image", path })), { type: "text", text: prompt }] };
      const inputs = await processor.apply_chat_template([message], { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
      await model.generate({ ...inputs, max_new_tokens: maxNew, streamer, ...sampling });
      return 0;
    }
    process.stdout.write(prompt);
    await model.generate({ input_ids: [tokenizer.encode(prompt)], max_new_tokens: maxNew, streamer, ...sampling });
    return 0;
  }

  const messages: ChatMessage[] = values.system ? [{ role: "system", content: values.system }] : [];
  let pendingImages = images.map((path) => ({ type: "image", path }));
  const rl = createInterface({ input: process.stdin, terminal: false });
  process.on("SIGINT", () => model.cancel()); // Ctrl-C stops the answer being generated
  process.stdout.write("> ");
  for await (const raw of rl) {
    const line = raw.trim();
    if (!line) break;
    messages.push(pendingImages.length ? { role: "user", content: [...pendingImages, { type: "text", text: line }] } : { role: "user", content: line });
    pendingImages = [];
    const inputs = processor
      ? await processor.apply_chat_template(messages, { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" })
      : tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_dict: true, return_tensors: "pt" });
    const out = await model.generate({ ...inputs, max_new_tokens: maxNew, streamer, ...sampling });
    const answer = tokenizer.decode(Array.from(out.data.subarray(inputs.input_ids.dims[1])), { skip_special_tokens: true });
    messages.push({ role: "assistant", content: answer });
    process.stdout.write("> ");
  }
  rl.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`llama4-ts: ${e.message}`);
    process.exit(1);
  },
);
