// PretrainedConfig: config.json as an object whose fields keep their config.json names, filled
// with transformers' defaults, with unknown keys kept and bad values rejected.
import { existsSync } from "node:fs";
import { join } from "node:path";

import { PretrainedOptions, resolvePretrained } from "./hub";
import { readTextFile } from "./utils/files";
import { valueText } from "./utils/options";
import { checkedProduct } from "./utils/sizes";

const MAX_CONFIG_INTEGER = 2 ** 40;
/** Most decoder layers a config may have (the per-layer lists are built from it). */
export const MAX_LAYERS = 2 ** 16;

export type JsonObject = Record<string, unknown>;

export function readJsonFile(path: string): JsonObject {
  const text = readTextFile(path);
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not a JSON object");
    return value as JsonObject;
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

/** Field checks shared by the config classes; `where` names the file or class in errors. */
export class ConfigChecker {
  constructor(private readonly where: string) {}

  /** An integer from `min` to `max` (by default 2^40, more than any model size: products of such sizes stay exact). */
  int(value: unknown, key: string, min = 0, max = MAX_CONFIG_INTEGER): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw new Error(`${this.where}: "${key}" must be an integer >= ${min}, got ${valueText(value)}`);
    }
    if (value > max) throw new Error(`${this.where}: "${key}" is ${value}, more than the ${max} it may be`);
    return value;
  }

  /** Checks that a product of config sizes (a weight's element count) stays below 2^50 elements. */
  product(keys: string[], values: number[]): void {
    checkedProduct(values, `${this.where}: ${keys.join(" x ")}`, 2 ** 50);
  }

  number(value: unknown, key: string, { positive = false } = {}): number {
    if (typeof value !== "number" || !Number.isFinite(value) || (positive && value <= 0)) {
      throw new Error(`${this.where}: "${key}" must be a ${positive ? "positive " : ""}finite number, got ${valueText(value)}`);
    }
    return value;
  }

  bool(value: unknown, key: string): boolean {
    if (typeof value !== "boolean") throw new Error(`${this.where}: "${key}" must be true or false, got ${valueText(value)}`);
    return value;
  }

  oneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T {
    if (typeof value !== "string" || !allowed.includes(value as T)) {
      throw new Error(`${this.where}: "${key}" must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${valueText(value)}`);
    }
    return value as T;
  }

  intList(value: unknown, key: string): number[] {
    if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v) && Math.abs(v) <= MAX_CONFIG_INTEGER)) {
      throw new Error(`${this.where}: "${key}" must be a list of integers, got ${valueText(value)}`);
    }
    return value as number[];
  }

  fail(message: string): never {
    throw new Error(`${this.where}: ${message}`);
  }
}

export class PretrainedConfig {
  [key: string]: unknown;
  model_type = "";

  /** Every key of the source object, defaults first so the source wins. */
  protected assign(defaults: JsonObject, source: JsonObject): void {
    Object.assign(this, defaults, source);
  }

  /** The config as config.json would hold it (own enumerable fields, nested configs expanded). */
  to_dict(): JsonObject {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(this)) out[k] = v instanceof PretrainedConfig ? v.to_dict() : v;
    return out;
  }

  to_json_string(): string {
    return JSON.stringify(this.to_dict(), null, 2);
  }
}

/** Directory + parsed config.json of a local path or Hub id. */
export async function loadConfigJson(pathOrId: string, options: PretrainedOptions = {}): Promise<{ dir: string; json: JsonObject }> {
  const dir = await resolvePretrained(pathOrId, { required: ["config.json"] }, options);
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new Error(`${dir}: missing config.json`);
  return { dir, json: readJsonFile(path) };
}
