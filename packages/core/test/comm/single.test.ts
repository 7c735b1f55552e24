// A world of one inside the test process: initDistributed without launcher variables, argument
// validation (thrown before anything reaches native code), the logger attached to a real group,
// and the TypeScript reference arithmetic.
import { describe, expect, it } from 'vitest';
import { DSShapeError, DSUnsupportedError, f32ToBf16, bf16ToF32 } from '@ds/tensor';

import { CommsLogger, initDistributed, referenceReduce } from '../../src/comm/index.js';

describe('world of one, in process', () => {
  it('runs every op as the identity and validates arguments', async () => {
    const d = await initDistributed({ env: {} });
    try {
      expect([d.rank, d.size, d.world.rank, d.world.size, d.world.name]).toEqual([0, 1, 0, 1, 'world']);
      const lines: string[] = [];
      const logger = new CommsLogger({ enabled: true, debug: true }, (l) => lines.push(l));
      logger.attach(d.world);
      const a = { dtype: 'f32' as const, array: new Float32Array([1.5, -2]) };
      const w = d.world.allReduce(a, { op: 'avg' });
      expect(typeof w.isCompleted()).toBe('boolean');
      await w;
      expect(w.isCompleted()).toBe(true);
      expect([...a.array]).toEqual([1.5, -2]);
      const out = { dtype: 'f32' as const, array: new Float32Array(2) };
      await d.world.allGather(out, a);
      expect([...out.array]).toEqual([1.5, -2]);
      await d.world.barrier();
      const s = logger.stats();
      expect([...s.keys()].some((k) => k.startsWith('all_reduce | [Caller Func:'))).toBe(true);

      expect(() => d.world.allReduce({ dtype: 'f32', array: new Uint16Array(2) })).toThrow(DSShapeError);
      expect(() => d.world.allReduce({ dtype: 'i32', array: new Int32Array(2) }, { op: 'avg' })).toThrow(DSUnsupportedError);
      expect(() => d.world.allReduce(a, { op: 'prod' as 'sum' })).toThrow(/reduce op 'prod' is not supported/);
      expect(() => d.world.allGather({ dtype: 'f32', array: new Float32Array(3) }, a)).toThrow(/must hold 1 blocks/);
      expect(() => d.world.broadcast(a, { root: 1 })).toThrow(/root 1 is not a rank of this group/);
      expect(() => d.world.allReduce(a, { timeoutMs: 0 })).toThrow(/timeoutMs/);
      const region = await d.world.allocRegistered(4096);
      expect(region.byteLength).toBe(4096);
      const view = { dtype: 'f32' as const, array: new Float32Array(region, 0, 8).fill(3) };
      await d.world.allReduce(view);
      expect(view.array[0]).toBe(3);
      expect(await d.newGroup([0])).not.toBeNull();
      await expect(d.newGroup([0, 1])).rejects.toThrow(/must be distinct integers in \[0, 1\)/);
    } finally {
      await d.destroy();
    }
  });
});

describe('reference arithmetic', () => {
  it('reduces floats in f32 in rank order and rounds once to the dtype', () => {
    // bf16: 1 + 2^-8 + 2^-8 is not representable; summing in f32 and rounding once gives 1 + 2^-7,
    // while rounding after each step would give 1 (ties to even).
    const one = f32ToBf16(1), tiny = f32ToBf16(2 ** -8);
    const out = new Uint16Array(1);
    referenceReduce('bf16', 'sum', [new Uint16Array([one]), new Uint16Array([tiny]), new Uint16Array([tiny])], out);
    expect(bf16ToF32(out[0]!)).toBe(1 + 2 ** -7);
    const avg = new Float32Array(1);
    referenceReduce('f32', 'avg', [new Float32Array([1]), new Float32Array([2]), new Float32Array([4])], avg);
    expect(avg[0]).toBe(Math.fround(7 / 3));
  });

  it('wraps integers and takes max/min', () => {
    const i = new Int32Array(1);
    referenceReduce('i32', 'sum', [new Int32Array([2 ** 31 - 1]), new Int32Array([1])], i);
    expect(i[0]).toBe(-(2 ** 31));
    const u = new Uint8Array(2);
    referenceReduce('u8', 'sum', [new Uint8Array([200, 3]), new Uint8Array([100, 9])], u);
    expect([...u]).toEqual([44, 12]);
    referenceReduce('u8', 'min', [new Uint8Array([200, 3]), new Uint8Array([100, 9])], u);
    expect([...u]).toEqual([100, 3]);
  });
});
