import { describe, expect, it } from 'vitest';
import { arange, fromArray, full, ones, randn, uniform, zeros } from '../src/create.js';
import { DSError, DSShapeError, DSUnsupportedError } from '../src/errors.js';
import { Storage } from '../src/memory/storage.js';
import { tidy } from '../src/memory/scope.js';
import { Parameter } from '../src/nn/parameter.js';
import { add, cast, crossEntropy, embedding, linear, matmul, sum } from '../src/ops/index.js';
import { createReferenceKernels } from '../src/reference/index.js';
import { Tensor } from '../src/tensor.js';
import { inReference } from './helpers/runtime.js';

describe('Tensor', () => {
  it('creates tensors of every dtype and reads them back', () =>
    inReference(() => {
      expect(zeros([2, 2]).toArray()).toEqual([0, 0, 0, 0]);
      expect(ones([3], { dtype: 'bf16' }).toArray()).toEqual([1, 1, 1]);
      expect(full([2], 2.5, { dtype: 'f16' }).toArray()).toEqual([2.5, 2.5]);
      expect(arange(4, { dtype: 'i32' }).toArray()).toEqual([0, 1, 2, 3]);
      expect(fromArray([1, 255], [2], { dtype: 'u8' }).toArray()).toEqual([1, 255]);
      // bf16 keeps 8 significant bits: 1 + 2^-9 rounds to 1 (ties to even).
      expect(fromArray([1 + 2 ** -9, 3.140625], [2], { dtype: 'bf16' }).toArray()).toEqual([1, 3.140625]);
      expect(randn([5], { seed: 3 }).toArray()).toEqual(randn([5], { seed: 3 }).toArray());
      expect(randn([5], { seed: 3 }).toArray()).not.toEqual(randn([5], { seed: 4 }).toArray());
      const u = uniform([100], { seed: 1, low: -2, high: 2 }).toArray();
      expect(Math.min(...u)).toBeGreaterThanOrEqual(-2);
      expect(Math.max(...u)).toBeLessThan(2);
    }));

  it('casts between dtypes explicitly, with f32 gradients through a bf16 cast', () =>
    inReference(() => {
      const x = fromArray([0.1, -2.7, 1e-3], [3], { requiresGrad: true });
      const b = cast(x, 'bf16');
      expect(b.dtype).toBe('bf16');
      expect(b.toArray()[0]).toBeCloseTo(0.1, 2);
      expect(cast(b, 'i32').toArray()).toEqual([0, -2, 0]);
      sum(cast(b, 'f32')).backward();
      expect(x.grad!.dtype).toBe('f32');
      expect(x.grad!.toArray()).toEqual([1, 1, 1]);
      expect(x.to('f32')).toBe(x);
    }));

  it('views a flat buffer at offsets (narrow, fromStorage) without copying', () =>
    inReference(() => {
      const flat = zeros([10]);
      const a = flat.narrow(0, 2, 6).view([2, 3]);
      const b = Tensor.fromStorage(flat.storage, 'f32', [2], 8);
      expect(a.storage).toBe(flat.storage);
      (flat.data() as Float32Array).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(a.toArray()).toEqual([3, 4, 5, 6, 7, 8]);
      expect(b.toArray()).toEqual([9, 10]);
      expect(a.transpose(0, 1).toArray()).toEqual([3, 6, 4, 7, 5, 8]);
      expect(() => Tensor.fromStorage(flat.storage, 'f32', [4], 8)).toThrow(DSShapeError);
    }));

  it('re-points a parameter and its gradient into flat buffers (ZeRO layout)', () =>
    inReference(() => {
      const w = Parameter.from(fromArray([1, 2, 3, 4, 5, 6], [3, 2]));
      const flatData = zeros([8], { category: 'parameters' });
      const flatGrad = zeros([8], { category: 'gradients' });
      const view = flatData.narrow(0, 2, 6).view([3, 2]);
      (view.data() as Float32Array).set(w.data() as Float32Array);
      w.setData(view);
      w.grad = flatGrad.narrow(0, 2, 6).view([3, 2]);
      expect(w.storage).toBe(flatData.storage);
      const x = fromArray([1, 1], [1, 2]);
      for (let i = 0; i < 2; i++) tidy(() => sum(linear(x, w)).backward());
      // Two backward passes accumulated into the flat gradient buffer.
      expect(flatGrad.toArray()).toEqual([0, 0, 2, 2, 2, 2, 2, 2]);
      expect(w.ownsGrad).toBe(false);
    }));

  it('wraps an existing (shared) buffer zero-copy', () =>
    inReference((rt) => {
      const shared = new SharedArrayBuffer(16);
      const t = Tensor.fromBuffer(shared, 'f32', [2, 2]);
      new Float32Array(shared)[3] = 7;
      expect(t.toArray()).toEqual([0, 0, 0, 7]);
      expect(t.storage.external).toBe(true);
      expect(rt.tracker.liveBytes('cpu', 'communication')).toBe(16);
      t.dispose();
      expect(rt.tracker.liveBytes('cpu', 'communication')).toBe(0);
      expect(() => Storage.wrap(rt.tracker, shared, 8, 16)).toThrow(DSShapeError);
    }));

  it('frees a storage with its last view; use after free is an error', () =>
    inReference((rt) => {
      const base = rt.tracker.liveBytes();
      const t = zeros([4]);
      const v = t.narrow(0, 1, 2);
      t.dispose();
      expect(rt.tracker.liveBytes()).toBe(base + 16);
      expect(v.toArray()).toEqual([0, 0]);
      v.dispose();
      expect(rt.tracker.liveBytes()).toBe(base);
      expect(() => v.toArray()).toThrow(DSError);
    }));

  it('rejects mismatched shapes, dtypes and devices with DSShapeError naming op and shapes', () =>
    inReference((rt) => {
      expect(() => add(zeros([2, 3]), zeros([4]))).toThrow(/add: shapes \[2, 3\] and \[4\] do not broadcast/);
      expect(() => matmul(zeros([2, 3]), zeros([4, 5]))).toThrow(/matmul: \[2, 3\] @ \[4, 5\]/);
      expect(() => linear(zeros([2, 3]), zeros([4, 2]))).toThrow(/linear: input \[2, 3\], weight \[4, 2\]/);
      expect(() => embedding(fromArray([0, 9], [2], { dtype: 'i32' }), zeros([4, 2]))).toThrow(/embedding: index 9 at position 1/);
      expect(() => crossEntropy(zeros([2, 4]), zeros([2]))).toThrow(/crossEntropy: targets must be i32, got \[2\] f32/);
      expect(() => add(zeros([2], { dtype: 'i32' }), zeros([2]))).toThrow(DSShapeError);
      expect(() => add(zeros([2]), zeros([2], { device: 'sim' }))).toThrow(/add: operands on different devices/);
      expect(() => add(zeros([2], { device: 'nope' }), zeros([2], { device: 'nope' }))).toThrow(DSUnsupportedError);
    }));
});

describe('tensor handles (DLPack-like)', () => {
  it('hands memory across zero-copy, strided views included', async () => {
    const { toHandle, fromHandle } = await import('../src/dlpack.js');
    inReference(() => {
      const t = arange(6).reshape([2, 3]);
      const h = toHandle(t.transpose(0, 1).narrow(0, 1, 2));
      expect(h.strides).toEqual([1, 3]);
      const back = fromHandle(h, { category: 'communication' });
      expect(back.toArray()).toEqual([1, 4, 2, 5]);
      (t.data() as Float32Array)[1] = 10;
      expect(back.toArray()[0]).toBe(10);
    });
  });
});
