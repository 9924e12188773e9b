// Seeded randomness and the mutation primitives every surface draws from. Written here rather than taken from a
// fuzzing library: the cases must be regenerated exactly from (seed, surface, index) inside any child process,
// and they mutate structured inputs (JSON configs, safetensors headers, chats), not just byte strings.

/** mulberry32: a small, fast PRNG with a 32-bit state; good enough to pick mutations. */
export function rngFor(seed, surface, index) {
  let h = 2166136261 >>> 0;
  for (const c of `${seed}:${surface}:${index}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  let a = h;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  };
  return rng;
}

/** Values that break code written for "a small positive integer" or "a string", and ordinary ones. */
export const EDGE_NUMBERS = [0, 1, -1, 2, 3, 7, 8, 16, 64, 255, 256, 1023, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32,
  2 ** 32 + 1, 2 ** 53, 2 ** 63, 1e9, 1e12, 1e30, 1e308, -1e9, 0.5, 1.5, -0.0, 1e-300, Number.MAX_SAFE_INTEGER];
const EDGE_OTHER = [null, true, false, "", "0", "1e9", "NaN", "llama4", "\u0000", "x".repeat(300), [], [1, 2], {}, { a: 1 }];

/** A replacement for `value`: an edge number, another type, or a nearby value. */
export function mutateValue(rng, value) {
  const r = rng.next();
  if (typeof value === "number" && r < 0.5) {
    const v = rng.pick([value * 2, value + 1, value - 1, -value, value * 1024, Math.floor(value / 2), value + 0.5]);
    return Number.isFinite(v) ? v : 0;
  }
  if (r < 0.8) return rng.pick(EDGE_NUMBERS);
  if (typeof value === "string" && rng.chance(0.5)) return mutateString(rng, value);
  return structuredClone(rng.pick(EDGE_OTHER)); // a copy: later mutations of it must not leak into other cases
}

export function mutateString(rng, s) {
  const ops = [
    () => s.slice(0, rng.int(s.length + 1)),
    () => s + s,
    () => s.replace(/./, "\u00ff"),
    () => s.split("").reverse().join(""),
    () => s.slice(0, rng.int(s.length + 1)) + rng.pick(["{", "}", "%", "\\", "\"", "\n", "\u{1F600}", "\ud800"]) + s.slice(rng.int(s.length + 1)),
    () => "",
  ];
  return rng.pick(ops)();
}

/** All paths to values inside a JSON document ([] is the root), up to `limit` of them. */
export function jsonPaths(value, limit = 5000) {
  const out = [];
  const walk = (v, path) => {
    if (out.length >= limit) return;
    out.push(path);
    if (v && typeof v === "object") for (const k of Object.keys(v)) walk(v[k], [...path, Array.isArray(v) ? Number(k) : k]);
  };
  walk(value, []);
  return out;
}

function getAt(root, path) {
  return path.reduce((v, k) => (v == null ? undefined : v[k]), root);
}

/** Mutates a parsed JSON document in place (or replaces its root): change, delete, duplicate or nest a value.
 * `keys` are keys worth adding (known config keys, say). Returns the root and the object keys on the path changed
 * (an error about the change should name one of them). */
export function mutateJson(rng, root, keys = [], paths = jsonPaths(root)) {
  const path = rng.pick(paths);
  const named = path.filter((k) => typeof k === "string");
  if (path.length === 0) return { root: rng.chance(0.5) ? mutateValue(rng, root) : root, touched: named };
  const parent = getAt(root, path.slice(0, -1));
  if (parent === null || typeof parent !== "object") return { root, touched: named };
  const key = path[path.length - 1];
  const op = rng.int(6);
  if (op === 0 && !Array.isArray(parent)) delete parent[key];
  else if (op === 1 && keys.length && !Array.isArray(parent)) {
    const added = rng.pick(keys);
    parent[added] = mutateValue(rng, rng.pick(EDGE_NUMBERS));
    named.push(added);
  } else if (op === 2 && Array.isArray(parent[key])) parent[key] = rng.chance(0.5) ? parent[key].slice(0, rng.int(parent[key].length + 1)) : [...parent[key], ...parent[key]];
  else if (op === 3) parent[key] = { nested: parent[key] };
  else parent[key] = mutateValue(rng, parent[key]);
  return { root, touched: named };
}

/** Byte-level mutations of a buffer: flips, overwrites with edge bytes, truncation, extension, splices. */
export function mutateBytes(rng, buf, { from = 0, to = buf.length } = {}) {
  const out = Buffer.from(buf);
  const at = () => from + rng.int(Math.max(1, to - from));
  switch (rng.int(6)) {
    case 0:
      for (let i = 0, n = 1 + rng.int(8); i < n; i++) out[at()] ^= 1 << rng.int(8);
      return out;
    case 1:
      for (let i = 0, n = 1 + rng.int(4); i < n; i++) out[at()] = rng.pick([0, 0xff, 0x7f, 0x80, 0x7f, 0xc0]);
      return out;
    case 2:
      return out.subarray(0, at());
    case 3:
      return Buffer.concat([out, Buffer.alloc(1 + rng.int(64), rng.int(256))]);
    case 4: {
      const a = at(), n = 1 + rng.int(32);
      return Buffer.concat([out.subarray(0, a), out.subarray(a + n)]);
    }
    default: {
      const a = at(), b = at(), n = 1 + rng.int(64);
      const copy = Buffer.from(out);
      out.copy(copy, a, b, b + n);
      return copy;
    }
  }
}
