// Reads and writes safetensors files in tests: the goldens, and hand-made broken checkpoints.
// (The engine has its own validating reader; this one trusts its input.)
import { readFileSync, writeFileSync } from "node:fs";

export interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface RawSafetensors {
  header: Record<string, RawEntry>;
  data: Buffer;
}

export function readRaw(path: string): RawSafetensors {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  delete header.__metadata__;
  return { header, data: buf.subarray(8 + n) };
}

/** The __metadata__ entries of a safetensors file (strings). */
export function readMetadata(path: string): Record<string, string> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  return JSON.parse(buf.subarray(8, 8 + n).toString("utf8")).__metadata__ ?? {};
}

export function writeRaw(path: string, file: RawSafetensors): void {
  const json = Buffer.from(JSON.stringify(file.header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, file.data]));
}

/** Removes a tensor and its bytes, moving the later tensors down, so the data section stays exactly covered. */
export function dropTensor(file: RawSafetensors, name: string): void {
  const [begin, end] = file.header[name].data_offsets;
  delete file.header[name];
  for (const e of Object.values(file.header)) {
    if (e.data_offsets[0] >= end) e.data_offsets = [e.data_offsets[0] - (end - begin), e.data_offsets[1] - (end - begin)];
  }
  file.data = Buffer.concat([file.data.subarray(0, begin), file.data.subarray(end)]);
}

export interface Golden {
  shape: number[];
  data: Float32Array | Int32Array;
}

/** All tensors of a goldens file (F32, I32, and I64 holding token ids, read as I32). */
export function readGoldens(path: string): Record<string, Golden> {
  const { header, data } = readRaw(path);
  const out: Record<string, Golden> = {};
  for (const [name, e] of Object.entries(header)) {
    const bytes = data.subarray(e.data_offsets[0], e.data_offsets[1]);
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    if (e.dtype === "F32") out[name] = { shape: e.shape, data: new Float32Array(copy) };
    else if (e.dtype === "I32") out[name] = { shape: e.shape, data: new Int32Array(copy) };
    else if (e.dtype === "I64") {
      const wide = new BigInt64Array(copy);
      const narrow = Int32Array.from(wide, (v) => {
        if (v > 2147483647n || v < -2147483648n) throw new Error(`goldens: ${name} holds ${v}, beyond int32`);
        return Number(v);
      });
      out[name] = { shape: e.shape, data: narrow };
    }
    else throw new Error(`goldens: unexpected dtype ${e.dtype} for ${name}`);
  }
  return out;
}
