// Buffers are checked before anything crosses into native code: a host array is rejected by name,
// and the size and in-place rules are core's, applied to device addresses.
import { DSShapeError, DSUnsupportedError } from '@ds/core';
import { DeviceArray, type ElementKind } from '@ds/tensor';
import { describe, expect, it } from 'vitest';

import { checkDevicePair, deviceArrayOf } from '../src/backends/checks.js';

const BYTES = { f32: 4, u16: 2, i32: 4, u8: 1 } as const;
/** A window of a made-up cuda allocation at `base` (nothing is dereferenced here). */
function cuda(kind: ElementKind, length: number, base = 0x7f0000000000n, offset = 0, total = length): DeviceArray {
  return new DeviceArray({ device: 'cuda', byteLength: total * BYTES[kind], address: base }, kind, offset * BYTES[kind], length);
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('nccl buffer checks', () => {
  it('rejects a host typed array by name, saying to put the tensor on cuda', () => {
    const e = thrown(() => deviceArrayOf('allReduce', 'buffer', { dtype: 'f32', array: new Float32Array(8) }));
    expect(e).toBeInstanceOf(DSShapeError);
    expect(e.message).toBe(
      "allReduce: buffer is a host Float32Array, but the nccl backend moves GPU memory only; put the tensor on 'cuda' (tensor.to('cuda')) before the collective, or use comm backend 'cpu' for host tensors",
    );
    expect(thrown(() => deviceArrayOf('send', 'buffer', { dtype: 'bf16', array: new Uint16Array(2) })).message).toMatch(/^send: buffer is a host Uint16Array/);
  });

  it("rejects another device's memory, a wrong element kind and an unknown dtype", () => {
    const sim = new DeviceArray({ device: 'sim', byteLength: 32, address: 4096n }, 'f32', 0, 8);
    expect(thrown(() => deviceArrayOf('broadcast', 'buffer', { dtype: 'f32', array: sim })).message).toMatch(
      /^broadcast: buffer lives on device 'sim', but the nccl backend moves memory of device 'cuda' only; move the tensor with \.to\('cuda'\)/,
    );
    expect(thrown(() => deviceArrayOf('allReduce', 'buffer', { dtype: 'bf16', array: cuda('f32', 4) })).message).toBe('allReduce: buffer has dtype bf16 but its array holds f32 elements (expected u16)');
    expect(thrown(() => deviceArrayOf('allReduce', 'buffer', { dtype: 'f64' as never, array: cuda('f32', 4) }))).toBeInstanceOf(DSUnsupportedError);
    expect(deviceArrayOf('allReduce', 'buffer', { dtype: 'f16', array: cuda('u16', 4) }).length).toBe(4);
  });

  it("applies core's sizes and in-place rules to device addresses", () => {
    const whole = cuda('f32', 12);
    // allGather: input = block `rank` of output is the in-place form; any other overlap is refused.
    expect(() => checkDevicePair('allGather', { dtype: 'f32', array: whole }, { dtype: 'f32', array: whole.subarray(4, 8) }, 3, 1)).not.toThrow();
    expect(thrown(() => checkDevicePair('allGather', { dtype: 'f32', array: whole }, { dtype: 'f32', array: whole.subarray(0, 4) }, 3, 1)).message).toBe(
      'allGather: input overlaps output (only input = block `rank` of output is allowed)',
    );
    // reduceScatter: output = block `rank` of input.
    expect(() => checkDevicePair('reduceScatter', { dtype: 'f32', array: whole.subarray(8, 12) }, { dtype: 'f32', array: whole }, 3, 2)).not.toThrow();
    expect(thrown(() => checkDevicePair('reduceScatter', { dtype: 'f32', array: cuda('f32', 5, 1n << 44n) }, { dtype: 'f32', array: whole }, 3, 0)).message).toBe(
      "reduceScatter: input has 12 elements but must hold 3 blocks of the output's 5",
    );
    // allToAll: the same view in place, never a partial overlap; equal blocks.
    expect(() => checkDevicePair('allToAll', { dtype: 'f32', array: whole }, { dtype: 'f32', array: whole }, 4, 0)).not.toThrow();
    expect(thrown(() => checkDevicePair('allToAll', { dtype: 'f32', array: whole.subarray(0, 8) }, { dtype: 'f32', array: whole.subarray(4, 12) }, 4, 0)).message).toBe(
      'allToAll: input and output partly overlap (use the same view for in-place)',
    );
    expect(thrown(() => checkDevicePair('allToAll', { dtype: 'f32', array: cuda('f32', 12, 1n << 44n) }, { dtype: 'f32', array: whole }, 5, 0)).message).toBe('allToAll: 12 elements do not split into 5 equal blocks');
    expect(thrown(() => checkDevicePair('allGather', { dtype: 'i32', array: cuda('i32', 12, 1n << 44n) }, { dtype: 'f32', array: cuda('f32', 4) }, 3, 0)).message).toBe(
      'allGather: output is i32 but input is f32; both must have the same dtype',
    );
  });
});
