// Quantization configs passed to from_pretrained, as transformers names them (transformers/utils/quantization_config.py).
// Pre-quantized compressed-tensors checkpoints (llm-compressor's FP8 / W4A16 / W8A16, Meta's FP8 releases) need none:
// their config.json says how they are stored, and they load as they are.

/**
 * FBGEMM FP8 (W8A8), as transformers' FbgemmFp8Config: at load, every Linear of the text model and the routed
 * experts get float8 e4m3 weights with one scale per output row; at run time each token's activations are
 * quantized to FP8 with a per-token scale bounded by `activation_scale_ub`. Stays in high precision: the modules of
 * `modules_to_not_convert` (default ["lm_head"], transformers' default), the routers (transformers' FBGEMM path
 * cannot convert them either: its experts expect the router's own Linear), embeddings, norms and the vision tower.
 * Weight memory of the converted layers halves against bf16.
 */
export class FbgemmFp8Config {
  readonly quant_method = "fbgemm_fp8";
  readonly activation_scale_ub: number;
  readonly modules_to_not_convert: string[] | null;

  constructor(options: { activation_scale_ub?: number; modules_to_not_convert?: string[] | null } = {}) {
    for (const key of Object.keys(options)) {
      if (key !== "activation_scale_ub" && key !== "modules_to_not_convert") {
        throw new Error(`FbgemmFp8Config: unknown option "${key}" (activation_scale_ub, modules_to_not_convert)`);
      }
    }
    const ub = options.activation_scale_ub ?? 1200.0;
    if (typeof ub !== "number" || !Number.isFinite(ub) || ub <= 0) {
      throw new Error(`FbgemmFp8Config: activation_scale_ub must be a positive number, got ${String(ub)}`);
    }
    const skip = options.modules_to_not_convert ?? null;
    if (skip !== null && (!Array.isArray(skip) || !skip.every((m) => typeof m === "string"))) {
      throw new Error("FbgemmFp8Config: modules_to_not_convert must be a list of module names");
    }
    this.activation_scale_ub = ub;
    this.modules_to_not_convert = skip;
  }

  to_dict(): { quant_method: string; activation_scale_ub: number; modules_to_not_convert: string[] | null } {
    return { quant_method: this.quant_method, activation_scale_ub: this.activation_scale_ub, modules_to_not_convert: this.modules_to_not_convert };
  }
}
