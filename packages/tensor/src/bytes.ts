// The one parser of byte sizes in @ds/*: environment variables (DS_MEMORY_LIMIT, DS_ALLOC_CACHE,
// DS_COMM_CHUNK), ds-bench's --min/--max, and anything else that takes "64MiB". It lives in
// @ds/tensor, the bottom of the import graph, so every package can use it. DeepSpeed has no single
// counterpart (its config takes plain numbers; nccl-tests' -b/-e take 1K/64M/1G).
//
// Grammar: a non-negative number, optionally in exponent form, then an optional unit:
//   1048576, 1e9, 1.5k, 256K, 64MiB, 2GB, 1t
// K, M, G and T (with or without i, with or without B, any case) are powers of 1024, as in the
// settings this parser replaced and in ulimit, nccl-tests and the JVM's -Xmx; B alone means bytes.
// A fraction of a byte is rounded down.
import { DSConfigError } from './errors.js';

const SIZE_RE = /^\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*(?:([kmgt])i?)?b?\s*$/i;
const UNIT = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 } as const;

/**
 * Bytes in `value` (a string such as "64MiB", or a number of bytes). `name` says where the value
 * came from (an environment variable, a flag) for the error message. Throws DSConfigError when it
 * is not a byte size or not below 2^53.
 */
export function parseByteSize(value: string | number, name = 'size'): number {
  const m = typeof value === 'string' ? SIZE_RE.exec(value) : null;
  const scale = m?.[2] ? UNIT[m[2].toLowerCase() as keyof typeof UNIT] : 1;
  const bytes = typeof value === 'number' ? value : m ? Number(m[1]) * scale : NaN;
  if (!(bytes >= 0) || bytes > Number.MAX_SAFE_INTEGER) {
    const message = `${name}='${value}' is not a byte size: give a number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. 1048576, 1e9, 256k, 64MiB, 2G`;
    throw new DSConfigError(message, [{ path: name, message: 'not a byte size', value }]);
  }
  return Math.floor(bytes);
}

/** The shortest exact form of a byte count in binary units: 1024 -> "1KiB", 1536 -> "1536B". */
export function formatByteSize(bytes: number): string {
  for (const [unit, size] of [['TiB', UNIT.t], ['GiB', UNIT.g], ['MiB', UNIT.m], ['KiB', UNIT.k]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
