// `torch.bfloat16` & co., so `dtype: torch.bfloat16` from the docs ports verbatim.
export type DTypeName = "auto" | "float32" | "bfloat16" | "float16";

export class TorchDType {
  constructor(readonly name: Exclude<DTypeName, "auto">) {}
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
} as const;

const NAMES: readonly string[] = ["auto", "float32", "bfloat16", "float16"];

/** Normalises a dtype option ("bfloat16", torch.bfloat16, "auto", undefined) to its name. */
export function resolveDType(dtype: unknown): DTypeName {
  if (dtype === undefined || dtype === null) return "auto";
  if (dtype instanceof TorchDType) return dtype.name;
  if (typeof dtype === "string") {
    const name = dtype.startsWith("torch.") ? dtype.slice(6) : dtype;
    if (NAMES.includes(name)) return name as DTypeName;
  }
  throw new Error(`dtype ${String(dtype)} is not supported: use "auto", "float32", "bfloat16", "float16" or torch.<dtype>`);
}
