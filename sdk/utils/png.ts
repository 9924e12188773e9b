// A decoder for one narrow case of PNG: 8-bit, not interlaced, no EXIF, and "thin" (many more rows than columns).
// libvips (through sharp) decodes PNG row by row with a fixed cost per row, so a legal 1 x 100,000,000 image takes
// tens of seconds there; inflating and unfiltering it here takes about a second. Any PNG outside the case, or one
// whose chunks do not check out (CRC, sizes, data), returns null and goes to sharp, so errors stay libvips' own.
// The pixels are those libvips gives for such a file (no gamma, no ICC, alpha dropped, palette expanded).
import { crc32, inflateSync } from "node:zlib";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Rows per column from which a PNG counts as thin, and the fewest rows worth the fast path. */
const THIN_RATIO = 64;
const MIN_ROWS = 65536;

/** RGB bytes of a thin 8-bit PNG, or null when the file is not one (or not a clean one). */
export function decodeThinPng(bytes: Buffer, maxPixels: number): { data: Uint8Array; width: number; height: number } | null {
  if (bytes.length < 33 || !bytes.subarray(0, 8).equals(SIGNATURE)) return null;
  let width = 0, height = 0, colorType = -1;
  let palette: Buffer | null = null;
  const idat: Buffer[] = [];
  for (let at = 8; at + 12 <= bytes.length;) {
    const length = bytes.readUInt32BE(at);
    if (at + 12 + length > bytes.length) return null;
    const type = bytes.toString("latin1", at + 4, at + 8);
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (crc32(bytes.subarray(at + 4, at + 8 + length)) !== bytes.readUInt32BE(at + 8 + length)) return null;
    if (type === "IHDR") {
      if (length !== 13 || body[8] !== 8 || body[10] !== 0 || body[11] !== 0 || body[12] !== 0) return null;
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      colorType = body[9];
    } else if (type === "PLTE") palette = body;
    else if (type === "IDAT") idat.push(body);
    else if (type === "eXIf") return null; // orientation: sharp rotates
    else if (type === "IEND") break;
    at += 12 + length;
  }
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (!channels || width < 1 || height < MIN_ROWS || height < THIN_RATIO * width || width * height > maxPixels) return null;
  if (colorType === 3 && (!palette || palette.length % 3 !== 0)) return null;
  const stride = width * channels;
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height });
  } catch {
    return null;
  }
  if (raw.length !== (stride + 1) * height) return null;
  // Unfilter in place (PNG filters 0-4; bpp = channels for 8-bit samples).
  const bpp = channels;
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1) + 1, prev = row - (stride + 1), filter = raw[row - 1];
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? raw[row + x - bpp] : 0, b = y > 0 ? raw[prev + x] : 0, c = x >= bpp && y > 0 ? raw[prev + x - bpp] : 0;
      let add: number;
      switch (filter) {
        case 0: add = 0; break;
        case 1: add = a; break;
        case 2: add = b; break;
        case 3: add = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: return null;
      }
      raw[row + x] = (raw[row + x] + add) & 0xff;
    }
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0, o = 0; y < height; y++) {
    const row = y * (stride + 1) + 1;
    for (let x = 0; x < width; x++, o += 3) {
      const s = row + x * channels;
      if (colorType === 3) {
        const i = raw[s] * 3;
        if (i + 2 >= palette!.length) return null; // an index past the palette: libvips' call
        out[o] = palette![i]; out[o + 1] = palette![i + 1]; out[o + 2] = palette![i + 2];
      } else if (channels >= 3) {
        out[o] = raw[s]; out[o + 1] = raw[s + 1]; out[o + 2] = raw[s + 2];
      } else {
        out[o] = out[o + 1] = out[o + 2] = raw[s];
      }
    }
  }
  return { data: out, width, height };
}
