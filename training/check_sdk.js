// Loads a model folder with the llama4-ts SDK (dist/) and checks it against transformers' reference.
//   node training/check_sdk.js models/llama4-tiny '{"input_ids": [...], "output_ids": [...], "prompt": "...",
//                                                   "image": {"image": "test/fixtures/images/dog.jpg", "question": "...", "input_ids": [...], "output_ids": [...]}}'
// Prints one JSON line: tokenizer ids equal, greedy continuation equal, and a default generate() sample;
// with "image" (a model with a vision tower), the processor's ids and the greedy answer to the picture too.
"use strict";
const path = require("node:path");
const { AutoProcessor, AutoTokenizer, Llama4ForCausalLM, Llama4ForConditionalGeneration } = require(
  path.join(__dirname, "..", "dist", "sdk", "index.js"),
);

function toList(x) {
  if (Array.isArray(x)) return x;
  if (x && typeof x.tolist === "function") return x.tolist();
  throw new Error("unexpected generate() result");
}

async function checkImage(dir, ref) {
  const processor = await AutoProcessor.from_pretrained(dir);
  const model = await Llama4ForConditionalGeneration.from_pretrained(dir);
  const messages = [{
    role: "user",
    content: [{ type: "image", path: path.join(__dirname, "..", ref.image) }, { type: "text", text: ref.question }],
  }];
  const inputs = await processor.apply_chat_template(messages, { add_generation_prompt: true, tokenize: true, return_dict: true, return_tensors: "pt" });
  const ids = Array.from(inputs.input_ids.data);
  const n = ref.output_ids.length - ref.input_ids.length;
  const out = toList(await model.generate({ ...inputs, max_new_tokens: n, min_new_tokens: n, do_sample: false }))[0];
  return {
    image_ids_match: JSON.stringify(ids) === JSON.stringify(ref.input_ids),
    image_greedy_match: JSON.stringify(out) === JSON.stringify(ref.output_ids),
    image_greedy_text: processor.decode(out.slice(ids.length)),
  };
}

(async () => {
  const dir = path.resolve(process.argv[2]);
  const ref = JSON.parse(process.argv[3]);
  const tokenizer = await AutoTokenizer.from_pretrained(dir);
  const model = await Llama4ForCausalLM.from_pretrained(dir);
  const ids = tokenizer.encode(ref.prompt);
  const idsMatch = JSON.stringify(ids) === JSON.stringify(ref.input_ids);
  const greedy = toList(await model.generate({ input_ids: [ids], max_new_tokens: ref.output_ids.length - ref.input_ids.length, do_sample: false }))[0];
  const greedyMatch = JSON.stringify(greedy) === JSON.stringify(ref.output_ids);
  // the plain call of the brief: generation_config's defaults (sampling)
  const sampled = toList(await model.generate({ input_ids: [ids], max_new_tokens: 20 }))[0];
  const chat = tokenizer.apply_chat_template([{ role: "user", content: "Good morning! How are you today?" }], { add_generation_prompt: true });
  const chatIds = Array.isArray(chat) ? chat : toList(chat.input_ids ?? chat);
  const chatOut = toList(await model.generate({ input_ids: [chatIds], max_new_tokens: 20, do_sample: false }))[0];
  const image = ref.image ? await checkImage(dir, ref.image) : null;
  console.log(JSON.stringify({
    ok: idsMatch && greedyMatch && (!image || (image.image_ids_match && image.image_greedy_match)),
    ids_match: idsMatch,
    greedy_match: greedyMatch,
    greedy_text: tokenizer.decode(greedy),
    sampled_text: tokenizer.decode(sampled),
    chat_greedy_text: tokenizer.decode(chatOut.slice(chatIds.length)),
    sdk_greedy_ids: greedy,
    ...image,
  }));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
