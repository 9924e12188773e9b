// Llama4TextConfig, Llama4VisionConfig and Llama4Config: transformers' defaults (Scout sizes) and
// the per-layer lists transformers derives from them.
import { ConfigChecker, JsonObject, loadConfigJson, MAX_LAYERS, PretrainedConfig } from "../../configuration_utils";
import { valueText } from "../../utils/options";
import { PretrainedOptions } from "../../hub";

const TEXT_DEFAULTS: JsonObject = {
  vocab_size: 202048,
  hidden_size: 5120,
  intermediate_size: 8192,
  intermediate_size_mlp: 16384,
  num_hidden_layers: 48,
  num_attention_heads: 40,
  num_key_value_heads: 8,
  head_dim: 128,
  hidden_act: "silu",
  max_position_embeddings: 4096 * 32,
  initializer_range: 0.02,
  rms_norm_eps: 1e-5,
  use_cache: true,
  pad_token_id: null,
  bos_token_id: 1,
  eos_token_id: 2,
  tie_word_embeddings: false,
  attention_dropout: 0.0,
  num_experts_per_tok: 1,
  num_local_experts: 16,
  moe_layers: null,
  interleave_moe_layer_step: 1,
  use_qk_norm: true,
  output_router_logits: false,
  router_aux_loss_coef: 0.001,
  router_jitter_noise: 0.0,
  rope_parameters: null,
  no_rope_layers: null,
  no_rope_layer_interval: 4,
  attention_chunk_size: 8192,
  layer_types: null,
  attn_temperature_tuning: true,
  floor_scale: 8192,
  attn_scale: 0.1,
  attention_bias: false,
};

const VISION_DEFAULTS: JsonObject = {
  hidden_size: 768,
  hidden_act: "gelu",
  num_hidden_layers: 34,
  num_attention_heads: 16,
  num_channels: 3,
  intermediate_size: 5632,
  vision_output_dim: 7680,
  image_size: 448,
  patch_size: 14,
  norm_eps: 1e-5,
  vision_feature_select_strategy: "default",
  initializer_range: 0.02,
  pixel_shuffle_ratio: 0.5,
  projector_input_dim: 4096,
  projector_output_dim: 4096,
  multi_modal_projector_bias: false,
  projector_dropout: 0.0,
  attention_dropout: 0.0,
  rope_parameters: null,
};

export interface RopeParameters {
  rope_type: "default" | "llama3";
  rope_theta: number;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

export class Llama4TextConfig extends PretrainedConfig {
  declare vocab_size: number;
  declare hidden_size: number;
  declare intermediate_size: number;
  declare intermediate_size_mlp: number;
  declare num_hidden_layers: number;
  declare num_attention_heads: number;
  declare num_key_value_heads: number;
  declare head_dim: number;
  declare num_local_experts: number;
  declare num_experts_per_tok: number;
  declare rms_norm_eps: number;
  declare max_position_embeddings: number;
  declare attention_chunk_size: number | null;
  declare use_qk_norm: boolean;
  declare attn_temperature_tuning: boolean;
  declare floor_scale: number;
  declare attn_scale: number;
  declare tie_word_embeddings: boolean;
  declare eos_token_id: number | number[] | null;
  declare bos_token_id: number | null;
  declare pad_token_id: number | null;
  /** 1 = RoPE layer, 0 = NoPE layer. */
  declare no_rope_layers: number[];
  declare moe_layers: number[];
  declare layer_types: ("chunked_attention" | "full_attention")[];
  declare rope_parameters: RopeParameters;

  constructor(source: JsonObject = {}, where = "Llama4TextConfig") {
    super();
    const c = new ConfigChecker(where);
    this.assign(TEXT_DEFAULTS, source);
    this.model_type = "llama4_text";
    for (const key of ["vocab_size", "hidden_size", "intermediate_size", "intermediate_size_mlp", "num_hidden_layers",
      "num_attention_heads", "num_local_experts", "num_experts_per_tok", "max_position_embeddings"]) {
      c.int(this[key], key, 1);
    }
    if (this.num_key_value_heads === null || this.num_key_value_heads === undefined) this.num_key_value_heads = this.num_attention_heads;
    c.int(this.num_key_value_heads, "num_key_value_heads", 1);
    if (this.head_dim === null || this.head_dim === undefined) this.head_dim = Math.floor(this.hidden_size / this.num_attention_heads);
    c.int(this.head_dim, "head_dim", 2);
    if (this.head_dim % 2) c.fail(`"head_dim" must be even (RoPE rotates pairs), got ${this.head_dim}`);
    if (this.num_attention_heads % this.num_key_value_heads) {
      c.fail(`num_attention_heads (${this.num_attention_heads}) must be a multiple of num_key_value_heads (${this.num_key_value_heads})`);
    }
    if (this.num_experts_per_tok > this.num_local_experts) {
      c.fail(`num_experts_per_tok (${this.num_experts_per_tok}) exceeds num_local_experts (${this.num_local_experts})`);
    }
    c.number(this.rms_norm_eps, "rms_norm_eps", { positive: true });
    // It divides positions before a log; below 1 the attention scale grows without bound (infinite in f32).
    if (c.number(this.floor_scale, "floor_scale") < 1) c.fail(`"floor_scale" must be >= 1, got ${this.floor_scale}`);
    c.number(this.attn_scale, "attn_scale");
    for (const key of ["use_qk_norm", "attn_temperature_tuning", "tie_word_embeddings", "attention_bias"]) c.bool(this[key], key);
    c.oneOf(this.hidden_act, "hidden_act", ["silu"]);
    if (this.attention_chunk_size !== null) c.int(this.attention_chunk_size, "attention_chunk_size", 1);
    this.rope_parameters = this.readRope(c);

    const L = c.int(this.num_hidden_layers, "num_hidden_layers", 1, MAX_LAYERS);
    c.product(["num_attention_heads", "head_dim", "hidden_size"], [this.num_attention_heads, this.head_dim, this.hidden_size]);
    c.product(["vocab_size", "hidden_size"], [this.vocab_size, this.hidden_size]);
    c.product(["num_local_experts", "intermediate_size", "hidden_size", "3"], [this.num_local_experts, this.intermediate_size, this.hidden_size, 3]);
    c.product(["intermediate_size_mlp", "hidden_size", "3"], [this.intermediate_size_mlp, this.hidden_size, 3]);
    const interval = c.int(this.no_rope_layer_interval, "no_rope_layer_interval", 1);
    const noRope = this.no_rope_layers as unknown;
    if (noRope === null || (Array.isArray(noRope) && noRope.length === 0)) {
      this.no_rope_layers = Array.from({ length: L }, (_, i) => ((i + 1) % interval !== 0 ? 1 : 0));
    } else if (c.intList(noRope, "no_rope_layers").length < L) {
      c.fail(`"no_rope_layers" has ${(noRope as number[]).length} entries for ${L} layers`);
    }
    if (this.moe_layers === null) {
      const step = c.int(this.interleave_moe_layer_step, "interleave_moe_layer_step", 1);
      this.moe_layers = [];
      for (let i = step - 1; i < L; i += step) this.moe_layers.push(i);
    } else {
      for (const i of c.intList(this.moe_layers, "moe_layers")) {
        if (i < 0 || i >= L) c.fail(`"moe_layers" entry ${i} is not a layer index (0..${L - 1})`);
      }
    }
    if (this.layer_types === null) {
      this.layer_types = this.no_rope_layers
        .slice(0, L)
        .map((rope) => (rope && this.attention_chunk_size !== null ? "chunked_attention" : "full_attention"));
    } else if (!Array.isArray(this.layer_types) || this.layer_types.length !== L) {
      c.fail(`"layer_types" must list one type per layer (${L})`);
    } else {
      this.layer_types.forEach((t, i) => c.oneOf(t, `layer_types[${i}]`, ["chunked_attention", "full_attention"]));
    }
  }

  /** transformers 5 writes rope_parameters; Meta's published config.json has rope_theta + rope_scaling. */
  private readRope(c: ConfigChecker): RopeParameters {
    const legacy = this.rope_scaling as JsonObject | null | undefined;
    const params = ((this.rope_parameters as unknown as JsonObject | null) ?? legacy ?? {}) as JsonObject;
    const type = (params.rope_type ?? params.type ?? "default") as string;
    const rope: RopeParameters = {
      ...(params as object),
      rope_type: c.oneOf(type, "rope_type", ["default", "llama3"]),
      rope_theta: c.number(params.rope_theta ?? this.rope_theta ?? 500000.0, "rope_theta", { positive: true }),
    };
    if (rope.rope_type === "llama3") {
      for (const key of ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"] as const) {
        c.number(rope[key], `rope_parameters.${key}`, { positive: true });
      }
    }
    return rope;
  }
}

export class Llama4VisionConfig extends PretrainedConfig {
  constructor(source: JsonObject = {}, where = "Llama4VisionConfig") {
    super();
    const c = new ConfigChecker(where);
    this.assign(VISION_DEFAULTS, source);
    this.model_type = "llama4_vision_model";
    for (const key of ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
      "patch_size", "vision_output_dim", "projector_input_dim", "projector_output_dim"]) {
      c.int(this[key], key, 1);
    }
    c.int(this.num_hidden_layers, "num_hidden_layers", 1, MAX_LAYERS);
    c.number(this.pixel_shuffle_ratio, "pixel_shuffle_ratio", { positive: true });
  }
}

/** transformers' Llama4Config.attribute_map: alias -> the key stored. */
const LLAMA4_ATTRIBUTE_MAP = { image_token_id: "image_token_index", boi_token_id: "boi_token_index", eoi_token_id: "eoi_token_index" } as const;

export class Llama4Config extends PretrainedConfig {
  declare text_config: Llama4TextConfig;
  declare vision_config: Llama4VisionConfig;
  declare boi_token_index: number;
  declare eoi_token_index: number;
  declare image_token_index: number;

  constructor(source: JsonObject = {}, where = "Llama4Config") {
    super();
    // config.json may spell the token ids by their attribute_map aliases (image_token_id, ...).
    const canonical: JsonObject = { ...source };
    for (const [alias, key] of Object.entries(LLAMA4_ATTRIBUTE_MAP)) {
      if (!(alias in canonical)) continue;
      if (!(key in canonical)) canonical[key] = canonical[alias];
      delete canonical[alias];
    }
    this.assign({ boi_token_index: 200080, eoi_token_index: 200081, image_token_index: 200092, tie_word_embeddings: false }, canonical);
    this.model_type = "llama4";
    this.text_config = new Llama4TextConfig((source.text_config as JsonObject) ?? {}, `${where} text_config`);
    this.vision_config = new Llama4VisionConfig((source.vision_config as JsonObject) ?? {}, `${where} vision_config`);
  }

  /** transformers' attribute_map aliases. */
  get image_token_id(): number {
    return this.image_token_index;
  }
  get boi_token_id(): number {
    return this.boi_token_index;
  }
  get eoi_token_id(): number {
    return this.eoi_token_index;
  }
}

/** The text config of either kind (Llama4Config keeps it under text_config). */
export function textConfigOf(config: Llama4Config | Llama4TextConfig): Llama4TextConfig {
  return config instanceof Llama4Config ? config.text_config : config;
}

/** Builds the config class config.json's model_type names ("llama4" or "llama4_text"). */
export function llama4ConfigFromJson(json: JsonObject, where: string): Llama4Config | Llama4TextConfig {
  const type = json.model_type;
  if (type === "llama4" || (type === undefined && "text_config" in json)) return new Llama4Config(json, where);
  if (type === "llama4_text" || type === undefined) return new Llama4TextConfig(json, where);
  throw new Error(`${where}: model_type ${valueText(type)} is not a Llama 4 model (expected "llama4" or "llama4_text")`);
}

export async function loadLlama4Config(pathOrId: string, options: PretrainedOptions = {}) {
  const { dir, json } = await loadConfigJson(pathOrId, options);
  return { dir, config: llama4ConfigFromJson(json, `${dir}/config.json`) };
}
