// `torch.bfloat16` & co., so `dtype: torch.bfloat16` from the docs ports verbatim; and torch's process-wide
// matmul precision switch.
import { native } from "./native";

/** Floating dtypes as torch names them, and transformers.js' names for weights quantized at load ("q8", "q4"). */
export type DTypeName = "auto" | "float32" | "bfloat16" | "float16" | "q8" | "q4";

export class TorchDType {
  constructor(readonly name: "float32" | "bfloat16" | "float16") {}
  toString(): string {
    return `torch.${this.name}`;
  }
}

export const torch = {
  float32: new TorchDType("float32"),
  float: new TorchDType("float32"),
  bfloat16: new TorchDType("bfloat16"),
  float16: new TorchDType("float16"),
  half: new TorchDType("float16"),
  /**
   * As in torch: "highest" (the default; "high" is the same here) computes products with bf16 weights in f32
   * on the exact weights. "medium" rounds their activations to bf16 first, as llama.cpp and torch's bf16
   * matmuls do, and runs prefill on the CPU's bf16 dot products (AVX512_BF16) where it has them: about twice
   * as fast, with bf16-level differences in the logits. Applies to every loaded model.
   */
  set_float32_matmul_precision(precision: "highest" | "high" | "medium"): void {
    native().setMatmulPrecision(String(precision));
  },
  get_float32_matmul_precision(): "highest" | "medium" {
    return native().matmulPrecision() as "highest" | "medium";
  },
} as const;

const NAMES: readonly string[] = ["auto", "float32", "bfloat16", "float16", "q8", "q4"];

/** Normalises a dtype option ("bfloat16", torch.bfloat16, "q4", "auto", undefined) to its name. */
export function resolveDType(dtype: unknown): DTypeName {
  if (dtype === undefined || dtype === null) return "auto";
  if (dtype instanceof TorchDType) return dtype.name;
  if (typeof dtype === "string") {
    const name = dtype.startsWith("torch.") ? dtype.slice(6) : dtype;
    if (NAMES.includes(name)) return name as DTypeName;
  }
  throw new Error(`dtype ${String(dtype)} is not supported: use "auto", "float32", "bfloat16", "float16", "q8", "q4" or torch.<dtype>`);
}
