// A small CPU tensor with the parts of torch.Tensor that the transformers examples use.
export type TensorDType = "float32" | "int32";
export type TensorData = Float32Array | Int32Array;
export type NestedNumbers = number | NestedNumbers[];
/** One index per dimension for Tensor.slice: null keeps it whole, a number selects (and drops the
 * dimension), [start, end] takes a range (either may be null; negative counts from the end). */
export type SliceIndex = null | number | [number | null, number | null];

export class Tensor {
  readonly dtype: TensorDType;
  readonly data: TensorData;
  readonly dims: number[];

  constructor(dtype: TensorDType, data: TensorData, dims: number[]) {
    const size = dims.reduce((a, b) => a * b, 1);
    if (size !== data.length) {
      throw new Error(`Tensor: ${data.length} values do not fill dims [${dims.join(", ")}] (${size} values)`);
    }
    this.dtype = dtype;
    this.data = data;
    this.dims = dims;
  }

  /** torch-style alias of dims. */
  get shape(): number[] {
    return this.dims;
  }

  get size(): number {
    return this.data.length;
  }

  /** Tensors live in CPU memory; `to(model.device)` is accepted so the docs examples port verbatim. */
  to(device: string): Tensor {
    if (device !== "cpu" && device !== "auto") {
      throw new Error(`Tensor.to: device "${device}" is not available (this engine runs on "cpu")`);
    }
    return this;
  }

  slice(...indices: SliceIndex[]): Tensor {
    if (indices.length > this.dims.length) {
      throw new Error(`Tensor.slice: ${indices.length} indices for a ${this.dims.length}-D tensor`);
    }
    const ranges: { start: number; end: number; keep: boolean }[] = this.dims.map((n, d) => {
      const idx = d < indices.length ? indices[d] : null;
      if (idx === null || idx === undefined) return { start: 0, end: n, keep: true };
      if (typeof idx === "number") {
        const i = idx < 0 ? idx + n : idx;
        if (!Number.isInteger(i) || i < 0 || i >= n) {
          throw new Error(`Tensor.slice: index ${idx} out of range for dimension ${d} of size ${n}`);
        }
        return { start: i, end: i + 1, keep: false };
      }
      const clamp = (v: number | null, dflt: number) => Math.min(n, Math.max(0, v === null ? dflt : v < 0 ? v + n : v));
      const start = clamp(idx[0], 0);
      return { start, end: Math.max(start, clamp(idx[1], n)), keep: true };
    });
    const outDims = ranges.filter((r) => r.keep).map((r) => r.end - r.start);
    const counts = ranges.map((r) => r.end - r.start);
    const total = counts.reduce((a, b) => a * b, 1);
    const out = new (this.data.constructor as { new (n: number): TensorData })(total);
    const strides = this.strides();
    let o = 0;
    const walk = (d: number, offset: number) => {
      if (d === ranges.length) {
        out[o++] = this.data[offset];
        return;
      }
      for (let i = ranges[d].start; i < ranges[d].end; i++) walk(d + 1, offset + i * strides[d]);
    };
    walk(0, 0);
    return new Tensor(this.dtype, out, outDims);
  }

  tolist(): NestedNumbers {
    const strides = this.strides();
    const build = (d: number, offset: number): NestedNumbers => {
      if (d === this.dims.length) return this.data[offset];
      const list: NestedNumbers[] = [];
      for (let i = 0; i < this.dims[d]; i++) list.push(build(d + 1, offset + i * strides[d]));
      return list;
    };
    return build(0, 0);
  }

  private strides(): number[] {
    const s = new Array(this.dims.length).fill(1);
    for (let d = this.dims.length - 2; d >= 0; d--) s[d] = s[d + 1] * this.dims[d + 1];
    return s;
  }
}

/** Accepts number[][] (or number[] for one row) or an int Tensor; returns a [batch, seq] Int32Array. */
export function toIdMatrix(value: unknown, name: string): { data: Int32Array; rows: number; cols: number } {
  if (value instanceof Tensor) {
    if (value.dims.length !== 2) throw new Error(`${name} must be 2-D [batch, seq], got dims [${value.dims.join(", ")}]`);
    const data = Int32Array.from(value.data as ArrayLike<number>, (v) => {
      if (!Number.isInteger(v)) throw new Error(`${name} must hold integers, got ${v}`);
      if (v < -(2 ** 31) || v >= 2 ** 31) throw new Error(`${name} holds ${v}, out of range (token ids are 32-bit integers)`);
      return v;
    });
    return { data, rows: value.dims[0], cols: value.dims[1] };
  }
  if (!Array.isArray(value)) throw new Error(`${name} must be a 2-D array of integers or a Tensor`);
  const rows = (value.length > 0 && !Array.isArray(value[0]) ? [value] : value) as unknown[];
  const cols = rows.length ? (rows[0] as unknown[]).length : 0;
  const data = new Int32Array(rows.length * cols);
  rows.forEach((row, r) => {
    if (!Array.isArray(row) || row.length !== cols) {
      throw new Error(`${name} rows must all have the same length (row 0 has ${cols}, row ${r} differs)`);
    }
    row.forEach((v, c) => {
      if (typeof v !== "number" || !Number.isInteger(v)) throw new Error(`${name}[${r}][${c}] = ${String(v)} is not an integer`);
      if (v < -(2 ** 31) || v >= 2 ** 31) throw new Error(`${name}[${r}][${c}] = ${v} is out of range (token ids are 32-bit integers)`);
      data[r * cols + c] = v;
    });
  });
  return { data, rows: rows.length, cols };
}
