// A minimal safetensors reader for the golden fixtures (F32, F64, I32, BF16 tensors).
import { readFileSync } from 'node:fs';

export interface LoadedTensor {
  dtype: string;
  shape: number[];
  values: number[];
}

export function readSafetensors(path: string): { tensors: Map<string, LoadedTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const base = 8 + headerLen;
  const tensors = new Map<string, LoadedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = info as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [start, end] } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const bytes = buf.subarray(base + start, base + end);
    const copy = new Uint8Array(bytes).buffer;
    let values: number[];
    if (dtype === 'F32') values = [...new Float32Array(copy)];
    else if (dtype === 'F64') values = [...new Float64Array(copy)];
    else if (dtype === 'I32') values = [...new Int32Array(copy)];
    else throw new Error(`readSafetensors: dtype ${dtype} not handled`);
    tensors.set(name, { dtype, shape, values });
  }
  return { tensors, metadata };
}
