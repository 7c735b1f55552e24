// safetensors (https://github.com/huggingface/safetensors) reading and writing: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__}, then the raw bytes.
// Python tools (safetensors, transformers) read what we write, and we read theirs.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

import { BYTES_PER_ELEMENT, type DType } from '@ds/tensor';

import { DSCheckpointError } from '../errors.js';

const TO_ST: Record<DType, string> = { f32: 'F32', bf16: 'BF16', f16: 'F16', i32: 'I32', u8: 'U8' };
const FROM_ST: Record<string, DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', I32: 'i32', U8: 'u8' };

export interface NamedTensor {
  dtype: DType;
  shape: number[];
  /** Little-endian element bytes (a typed array of the dtype's element type, or raw bytes). */
  data: ArrayBufferView;
}

export interface SafetensorsFile {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Serialises tensors (sorted by name) and string metadata into one safetensors byte array. */
export function encodeSafetensors(tensors: Iterable<[string, NamedTensor]>, metadata: Record<string, string> = {}): Uint8Array[] {
  const entries = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const bytes = numel * BYTES_PER_ELEMENT[t.dtype];
    if (bytes !== t.data.byteLength) {
      throw new DSCheckpointError(`safetensors: tensor '${name}' has shape [${t.shape}] of ${t.dtype} (${bytes} bytes) but ${t.data.byteLength} bytes of data`);
    }
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep the data 8-byte aligned
  const head = new Uint8Array(8 + Buffer.byteLength(json));
  new DataView(head.buffer).setBigUint64(0, BigInt(head.length - 8), true);
  head.set(Buffer.from(json, 'utf8'), 8);
  return [head, ...entries.map(([, t]) => bytesOf(t.data))];
}

/** Writes to `path` through a temporary file, fsync and rename: a crash leaves the old file or none. */
export function writeSafetensors(path: string, tensors: Iterable<[string, NamedTensor]>, metadata: Record<string, string> = {}): void {
  const chunks = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.byteLength) done += writeSync(fd, c, done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Parses safetensors bytes; tensor data is copied into fresh, aligned typed arrays. */
export function decodeSafetensors(buf: Uint8Array, source = 'buffer'): SafetensorsFile {
  const fail = (why: string) => new DSCheckpointError(`safetensors: ${source} is not a valid safetensors file: ${why}`);
  if (buf.byteLength < 8) throw fail('shorter than its 8-byte header length');
  const n = Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  if (n > buf.byteLength - 8 || n > 100_000_000) throw fail(`header length ${n} exceeds the file size ${buf.byteLength}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw fail(`header is not JSON (${(err as Error).message})`);
  }
  const dataStart = 8 + n;
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    const dtype = FROM_ST[info.dtype ?? ''];
    if (!dtype) throw fail(`tensor '${name}' has dtype ${info.dtype}; supported: ${Object.keys(FROM_ST).join(', ')}`);
    const shape = info.shape;
    const off = info.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw fail(`tensor '${name}' has a bad shape`);
    if (!Array.isArray(off) || off.length !== 2) throw fail(`tensor '${name}' has bad data_offsets`);
    const bytes = shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype];
    if (off[1] - off[0] !== bytes || off[0] < 0 || dataStart + off[1] > buf.byteLength) {
      throw fail(`tensor '${name}' data_offsets [${off}] do not match its shape [${shape}] or the file size`);
    }
    const copy = new ArrayBuffer(bytes);
    new Uint8Array(copy).set(buf.subarray(dataStart + off[0], dataStart + off[1]));
    const data = dtype === 'f32' ? new Float32Array(copy) : dtype === 'i32' ? new Int32Array(copy) : dtype === 'u8' ? new Uint8Array(copy) : new Uint16Array(copy);
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new DSCheckpointError(`cannot read checkpoint file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return decodeSafetensors(buf, path);
}
