import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, it } from 'vitest';
import { empty, zeros } from '../../src/create.js';
import { DSConfigError, DSOutOfMemoryError } from '../../src/errors.js';
import { readTensorEnv } from '../../src/env.js';
import { BufferCache, MIN_CACHED_BYTES } from '../../src/memory/cache.js';
import { Storage } from '../../src/memory/storage.js';
import { Runtime, withRuntime } from '../../src/runtime.js';
import { Tensor } from '../../src/tensor.js';

const MiB = 1 << 20;
const f32s = (bytes: number) => [bytes / 4];

function runtime(opts: { allocCache?: number; poisonUninit?: boolean; memoryLimit?: number } = {}): Runtime {
  return new Runtime({ allocCache: 64 * MiB, poisonUninit: false, ...opts });
}

describe('buffer cache', () => {
  it('hands a freed buffer of the same size to the next allocation, zeroed', () => {
    const rt = runtime();
    withRuntime(rt, () => {
      const a = zeros(f32s(MiB));
      const buf = a.storage.buffer;
      (a.data() as Float32Array).fill(7);
      a.dispose();
      expect(rt.tracker.cache.stats()).toMatchObject({ cachedBytes: MiB, cachedBuffers: 1 });
      const b = zeros(f32s(MiB));
      expect(b.storage.buffer).toBe(buf);
      expect((b.data() as Float32Array).every((v) => v === 0)).toBe(true);
      expect(rt.tracker.cache.stats()).toMatchObject({ cachedBytes: 0, hits: 1 });
      // Another size misses and gets its own buffer.
      const c = zeros(f32s(2 * MiB));
      expect(c.storage.buffer).not.toBe(buf);
      expect(rt.tracker.cache.stats().misses).toBeGreaterThanOrEqual(2);
      b.dispose();
      c.dispose();
    });
  });

  it('does not count cached bytes as live, and leaves peaks to tensors', () => {
    const rt = runtime();
    withRuntime(rt, () => {
      zeros(f32s(MiB)).dispose();
      expect(rt.tracker.liveBytes()).toBe(0);
      expect(rt.tracker.cache.cachedBytes).toBe(MiB);
      const t = zeros(f32s(MiB));
      expect(rt.tracker.liveBytes()).toBe(MiB);
      expect(rt.tracker.peakBytes()).toBe(MiB);
      t.dispose();
    });
  });

  it('leaves an uninitialized reuse as it was, or 0xFF bytes (NaN) under poisoning', () => {
    for (const poison of [false, true]) {
      const rt = runtime({ poisonUninit: poison });
      withRuntime(rt, () => {
        const a = zeros(f32s(MiB));
        (a.data() as Float32Array).fill(3);
        a.dispose();
        const b = Tensor.empty(f32s(MiB), 'f32', { uninitialized: true });
        const d = b.data() as Float32Array;
        if (poison) expect(Number.isNaN(d[0]) && Number.isNaN(d[d.length - 1])).toBe(true);
        else expect(d[0]).toBe(3);
        b.dispose();
        // A fresh (uncached) uninitialized buffer is poisoned too.
        const c = Tensor.empty(f32s(3 * MiB), 'f32', { uninitialized: true });
        expect(Number.isNaN((c.data() as Float32Array)[5])).toBe(poison);
        c.dispose();
      });
    }
  });

  it('keeps at most its limit, dropping the oldest buffers first', () => {
    const rt = runtime({ allocCache: 3 * MiB });
    withRuntime(rt, () => {
      const ts = [1, 2, 3, 4].map(() => zeros(f32s(MiB)));
      const bufs = ts.map((t) => t.storage.buffer);
      for (const t of ts) t.dispose();
      expect(rt.tracker.cache.stats()).toMatchObject({ cachedBytes: 3 * MiB, cachedBuffers: 3, evictions: 1 });
      // The first freed was dropped; the last freed comes back first.
      const again = zeros(f32s(MiB));
      expect(again.storage.buffer).toBe(bufs[3]);
      expect(bufs.slice(1)).toContain(again.storage.buffer);
      expect(again.storage.buffer).not.toBe(bufs[0]);
      again.dispose();
      rt.tracker.cache.clear();
      expect(rt.tracker.cache.stats()).toMatchObject({ cachedBytes: 0, cachedBuffers: 0 });
    });
  });

  it('gives cached bytes back before failing a DS_MEMORY_LIMIT check', () => {
    const rt = runtime({ memoryLimit: 4 * MiB });
    withRuntime(rt, () => {
      const live = zeros(f32s(2 * MiB));
      zeros(f32s(MiB)).dispose();
      zeros(f32s(MiB / 2)).dispose();
      expect(rt.tracker.cache.cachedBytes).toBe(1.5 * MiB);
      // 2 MiB live + 1.5 MiB cached + 2 MiB new > 4 MiB: the cache is trimmed and the allocation fits.
      const more = zeros(f32s(2 * MiB));
      expect(rt.tracker.cache.cachedBytes).toBe(0);
      expect(() => zeros(f32s(MiB))).toThrow(DSOutOfMemoryError);
      live.dispose();
      more.dispose();
    });
  });

  it('caches nothing when off, below the size floor, or for wrapped buffers', () => {
    const off = runtime({ allocCache: 0 });
    withRuntime(off, () => {
      zeros(f32s(MiB)).dispose();
      expect(off.tracker.cache.cachedBytes).toBe(0);
    });
    const rt = runtime();
    withRuntime(rt, () => {
      empty([MIN_CACHED_BYTES / 4 - 1]).dispose();
      expect(rt.tracker.cache.cachedBytes).toBe(0);
      const shared = new ArrayBuffer(MiB);
      Tensor.fromBuffer(shared, 'f32', f32s(MiB)).dispose();
      expect(rt.tracker.cache.cachedBytes).toBe(0);
      const dev = Storage.allocate(rt.tracker, MiB, { device: 'sim' }, rt.device('sim'));
      dev.retain();
      dev.release();
      expect(rt.tracker.cache.cachedBytes).toBe(0);
    });
  });

  it('does not reuse a storage that garbage collection reclaimed: a kept data() array stays its own', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const rt = runtime();
    let kept: Float32Array | undefined;
    withRuntime(rt, () => {
      // The tensor handle is dropped without dispose(); only its data() array is kept.
      kept = zeros(f32s(MiB)).data() as Float32Array;
      kept.fill(5);
    });
    for (let i = 0; i < 50 && rt.tracker.gcReclaimed === 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(rt.tracker.gcReclaimed).toBe(1);
    expect(rt.tracker.cache.cachedBytes).toBe(0);
    const fresh = withRuntime(rt, () => zeros(f32s(MiB)));
    expect(fresh.storage.buffer).not.toBe(kept!.buffer);
    expect(kept![0]).toBe(5);
    fresh.dispose();
  });

  it('BufferCache refuses detached buffers and buffers over its limit', () => {
    const cache = new BufferCache(2 * MiB);
    const big = new ArrayBuffer(3 * MiB);
    expect(cache.give(big)).toBe(false);
    const moved = new ArrayBuffer(MiB);
    structuredClone(moved, { transfer: [moved] });
    expect(moved.byteLength).toBe(0);
    expect(cache.give(moved)).toBe(false);
    expect(cache.give(new ArrayBuffer(MiB))).toBe(true);
    expect(cache.take(MiB)?.byteLength).toBe(MiB);
    expect(cache.take(MiB)).toBeUndefined();
  });

  it('reads DS_ALLOC_CACHE and DS_POISON_UNINIT, rejecting bad values by name', () => {
    expect(readTensorEnv({ DS_ALLOC_CACHE: '512m' }).allocCache).toBe(512 * MiB);
    expect(readTensorEnv({ DS_ALLOC_CACHE: '0' }).allocCache).toBe(0);
    const one = readTensorEnv({}).allocCache;
    expect(one).toBeGreaterThan(0);
    // Ranks on one host share the default: 4 local ranks get a quarter of it each.
    expect(readTensorEnv({ LOCAL_SIZE: '4' }).allocCache).toBe(Math.floor(one / 4));
    expect(readTensorEnv({ LOCAL_SIZE: 'x' }).allocCache).toBe(one);
    expect(readTensorEnv({ DS_POISON_UNINIT: '1' }).poisonUninit).toBe(true);
    expect(readTensorEnv({}).poisonUninit).toBe(false);
    expect(() => readTensorEnv({ DS_ALLOC_CACHE: 'lots' })).toThrow(DSConfigError);
    expect(() => readTensorEnv({ DS_ALLOC_CACHE: 'lots' })).toThrow(/DS_ALLOC_CACHE='lots' is not a byte size/);
    expect(() => readTensorEnv({ DS_POISON_UNINIT: 'yes' })).toThrow(DSConfigError);
    expect(() => readTensorEnv({ DS_POISON_UNINIT: 'yes' })).toThrow(/DS_POISON_UNINIT='yes' must be 0 or 1/);
  });
});
