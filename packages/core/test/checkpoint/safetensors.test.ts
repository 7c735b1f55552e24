import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from '../../src/checkpoint/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

describe('safetensors', () => {
  it('round-trips every dtype, shapes and metadata', () => {
    const tensors = new Map([
      ['w', { dtype: 'f32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) }],
      ['b16', { dtype: 'bf16' as const, shape: [2], data: Uint16Array.from([0x3f80, 0xc000]) }],
      ['h', { dtype: 'f16' as const, shape: [1], data: Uint16Array.from([0x3c00]) }],
      ['ids', { dtype: 'i32' as const, shape: [3], data: Int32Array.from([-1, 0, 7]) }],
      ['mask', { dtype: 'u8' as const, shape: [0], data: new Uint8Array(0) }],
    ]);
    const path = join(dir, 'a.safetensors');
    writeSafetensors(path, tensors, { format: 'pt', step: '3' });
    const back = readSafetensors(path);
    expect(back.metadata).toEqual({ format: 'pt', step: '3' });
    expect([...back.tensors.keys()].sort()).toEqual(['b16', 'h', 'ids', 'mask', 'w']);
    for (const [name, t] of tensors) {
      const got = back.tensors.get(name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(Array.from(got.data as unknown as ArrayLike<number>)).toEqual(Array.from(t.data as unknown as ArrayLike<number>));
    }
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('writes the layout Python readers expect: u64 header length, aligned JSON, sorted data', () => {
    const bytes = concat(encodeSafetensors([['b', { dtype: 'f32', shape: [1], data: Float32Array.from([2]) }], ['a', { dtype: 'f32', shape: [1], data: Float32Array.from([1]) }]]));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
    expect(header.a).toEqual({ dtype: 'F32', shape: [1], data_offsets: [0, 4] });
    expect(header.b).toEqual({ dtype: 'F32', shape: [1], data_offsets: [4, 8] });
    expect(new Float32Array(bytes.slice(8 + n).buffer)).toEqual(Float32Array.from([1, 2]));
  });

  it('rejects data that does not match its shape', () => {
    expect(() => encodeSafetensors([['x', { dtype: 'f32', shape: [3], data: new Float32Array(2) }]])).toThrow(/shape \[3\] of f32 \(12 bytes\) but 8 bytes/);
  });

  it('rejects corrupt files with a DSCheckpointError naming the file', () => {
    const good = concat(encodeSafetensors([['x', { dtype: 'f32', shape: [2], data: Float32Array.from([1, 2]) }]]));
    const cases: Array<[Uint8Array, RegExp]> = [
      [good.subarray(0, 4), /shorter than its 8-byte header/],
      [good.subarray(0, good.length - 4), /do not match its shape/],
      [Uint8Array.from([...new Uint8Array(new BigUint64Array([BigInt(1e6)]).buffer), 1, 2]), /exceeds the file size/],
    ];
    for (const [bytes, re] of cases) {
      const path = join(dir, 'bad.safetensors');
      writeFileSync(path, bytes);
      expect(() => readSafetensors(path)).toThrow(re);
      try {
        readSafetensors(path);
      } catch (err) {
        expect((err as Error).message).toContain(path);
        expect((err as { code: string }).code).toBe('DS_CHECKPOINT');
      }
    }
    const notJson = Uint8Array.from([...new Uint8Array(new BigUint64Array([2n]).buffer), 0x7b, 0x7b]);
    expect(() => decodeSafetensors(notJson)).toThrow(/header is not JSON/);
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(/cannot read checkpoint file/);
    expect(readFileSync(join(dir, 'bad.safetensors')).length).toBeGreaterThan(0);
  });
});
