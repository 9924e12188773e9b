// The one reader for the files the SDK reads (config.json, generation_config.json, tokenizer files, chat
// templates, index.json, preprocessor_config.json, image files): a regular file of bounded size. A FIFO is
// opened non-blocking and refused, a symlink to a device such as /dev/zero is refused by its type, and a file
// larger than its kind can be says so instead of filling memory.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

/** Largest JSON / template file accepted (the real Llama 4 tokenizer.json is about 30 MB). */
export const MAX_TEXT_FILE_BYTES = 256 * 2 ** 20;

/** The bytes of a regular file of at most `maxBytes`; errors name the file. */
export function readRegularFile(path: string, maxBytes = MAX_TEXT_FILE_BYTES): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${path}: ${code === "ENOENT" ? "no such file" : `cannot read (${(e as Error).message})`}`);
  }
  try {
    const info = fstatSync(fd);
    if (info.isDirectory()) throw new Error(`${path}: is a directory, not a file`);
    if (!info.isFile()) throw new Error(`${path}: is not a regular file`);
    if (info.size > maxBytes) throw new Error(`${path}: ${info.size} bytes is more than the ${maxBytes} such a file may have`);
    const bytes = Buffer.alloc(info.size);
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(fd, bytes, got, bytes.length - got, got);
      if (n <= 0) break;
      got += n;
    }
    return got === bytes.length ? bytes : bytes.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

export function readTextFile(path: string, maxBytes = MAX_TEXT_FILE_BYTES): string {
  return readRegularFile(path, maxBytes).toString("utf8");
}
