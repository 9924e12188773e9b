// AutoProcessor: picks the processor class a repo's processor files name. Llama 4 checkpoints with
// a vision tower ship preprocessor_config.json / processor_config.json; text-only ones have none,
// and for those transformers hands back the tokenizer, which here is an error pointing at
// AutoTokenizer (so that the result has one static type: the processor).
import { existsSync } from "node:fs";
import { join } from "node:path";

import { readJsonFile } from "../../configuration_utils";
import { HUB_OPTION_KEYS, resolvePretrained } from "../../hub";
import { checkOptions } from "../../utils/options";
import { Llama4Processor, ProcessorFromPretrainedOptions } from "../llama4/processing_llama4";

const PROCESSOR_CONFIGS = ["processor_config.json", "preprocessor_config.json"];
const SUPPORTED = ["Llama4Processor"];

export class AutoProcessor {
  static async from_pretrained(pathOrId: string, options: ProcessorFromPretrainedOptions = {}): Promise<Llama4Processor> {
    checkOptions("from_pretrained", options, [...HUB_OPTION_KEYS, "tokenizer"]);
    const dir = await resolvePretrained(pathOrId, { required: [], optional: PROCESSOR_CONFIGS }, options);
    const configs = PROCESSOR_CONFIGS.filter((f) => existsSync(join(dir, f)));
    if (configs.length === 0) {
      throw new Error(`${pathOrId}: no processor_config.json or preprocessor_config.json: a text-only checkpoint has no processor; use AutoTokenizer.from_pretrained`);
    }
    for (const file of configs) {
      const cls = readJsonFile(join(dir, file)).processor_class;
      if (cls !== undefined && !SUPPORTED.includes(cls as string)) {
        throw new Error(`${pathOrId}: ${file} names processor_class "${String(cls)}"; this library provides ${SUPPORTED.join(", ")}`);
      }
    }
    return Llama4Processor.from_pretrained(pathOrId, options);
  }
}
