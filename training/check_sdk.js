// Loads a model folder with the llama4-ts SDK (dist/) and checks it against transformers' reference.
//   node training/check_sdk.js models/llama4-tiny '{"input_ids": [...], "output_ids": [...], "prompt": "..."}'
// Prints one JSON line: tokenizer ids equal, greedy continuation equal, and a default generate() sample.
"use strict";
const path = require("node:path");
const { Llama4ForCausalLM, AutoTokenizer } = require(path.join(__dirname, "..", "dist", "sdk", "index.js"));

function toList(x) {
  if (Array.isArray(x)) return x;
  if (x && typeof x.tolist === "function") return x.tolist();
  throw new Error("unexpected generate() result");
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
  console.log(JSON.stringify({
    ok: idsMatch && greedyMatch,
    ids_match: idsMatch,
    greedy_match: greedyMatch,
    greedy_text: tokenizer.decode(greedy),
    sampled_text: tokenizer.decode(sampled),
    chat_greedy_text: tokenizer.decode(chatOut.slice(chatIds.length)),
    sdk_greedy_ids: greedy,
  }));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
