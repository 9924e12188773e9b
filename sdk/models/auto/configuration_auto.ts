// AutoConfig: picks the config class from config.json's model_type.
import { PretrainedOptions } from "../../hub";
import { Llama4Config, Llama4TextConfig, loadLlama4Config } from "../llama4/configuration_llama4";

export class AutoConfig {
  static async from_pretrained(pathOrId: string, options: PretrainedOptions = {}): Promise<Llama4Config | Llama4TextConfig> {
    return (await loadLlama4Config(pathOrId, options)).config;
  }
}
