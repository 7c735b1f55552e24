// Every cuda kernel against its cpu twin (src/backends/cpu.ts) on the same random inputs, compared
// element by element within the tolerance of the dtype results are stored in. Runs only where
// cudaStatus() says a GPU is usable (scripts/device-check.sh runs it on the GPU machine); elsewhere
// the suite is skipped with the reason printed.
import { describe, expect, it } from 'vitest';

import { DSShapeError } from '../../src/errors.js';
import { DeviceArray, type HostArray } from '../../src/devices/device-array.js';
import type { FloatDType, KernelTable } from '../../src/kernels/table.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { cpu, decode, encode, FLOAT_DTYPES, randomArray, rng, tol } from '../kernels/helpers.js';
import { expectClose, type Tolerance } from '@ds-internal/test-kit';
import { cuda, down, skipReason, up } from './helpers.js';

type Arrays = Record<string, HostArray>;
type Run = (t: KernelTable, a: Record<string, any>) => void;

/** f32 compute that sums many terms in another order than the cpu: a little looser than tol('f32'). */
function loose(dtype: FloatDType, scale = 1): Tolerance {
  return dtype === 'f32' ? { rtol: 1e-4, atol: 1e-5 * scale } : tol(dtype, scale);
}

/**
 * Runs `run` on the cpu table over host copies and on the cuda table over device copies of
 * `inputs` and `outputs` (outputs start as given: accumulate kernels add into them), then compares
 * each output. Float outputs of `dtype` are decoded first; f32 ones use `f32Tol`; integer ones must match bit for bit.
 */
function compare(dtype: FloatDType, inputs: Arrays, outputs: Arrays, run: Run, t: Tolerance = tol(dtype), f32Tol: Tolerance = { rtol: 1e-4, atol: 1e-5 },
  twin: KernelTable = cpu, u16As: Record<string, FloatDType> = {}): void {
  const host: Record<string, HostArray> = {};
  const dev: Record<string, DeviceArray> = {};
  for (const [k, v] of Object.entries({ ...inputs, ...outputs })) {
    host[k] = v.slice();
    dev[k] = up(v);
  }
  run(twin, host);
  run(cuda().kernels, dev);
  for (const k of Object.keys(outputs)) {
    const want = host[k]!;
    const got = down(dev[k]!, want);
    if (want instanceof Uint16Array) expectClose(decode(u16As[k] ?? dtype, got), decode(u16As[k] ?? dtype, want), u16As[k] ? tol(u16As[k]) : t, k);
    else if (want instanceof Float32Array) expectClose(got, want, dtype === 'f32' ? t : f32Tol, k);
    else expectClose(got, want, { rtol: 0, atol: 0 }, k);
  }
}

/** A cuda copy typed loosely, for calling the table directly. */
const onCuda = (a: HostArray) => up(a) as never;
const zeros = (dtype: FloatDType, n: number) => (dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n));
const ids = (n: number, vocab: number, seed: number) => Int32Array.from({ length: n }, ((r) => () => Math.floor(r() * vocab))(rng(seed)));

describe.skipIf(skipReason !== null)(`cuda kernels against the cpu twins${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  describe.each(FLOAT_DTYPES)('%s', (dtype) => {
    it('cast, copy, fill', () => {
      const n = 1000;
      for (const to of ['f32', 'bf16', 'f16', 'i32', 'u8'] as const) {
        const src = randomArray(dtype, n, 1, -300, 300);
        const out = to === 'f32' ? new Float32Array(n) : to === 'i32' ? new Int32Array(n) : to === 'u8' ? new Uint8Array(n) : new Uint16Array(n);
        compare(dtype, { src }, { out }, (t, a) => t.cast(dtype, a.src, to, a.out, n), { rtol: 0, atol: 0 }, { rtol: 0, atol: 0 });
      }
      compare(dtype, { src: randomArray(dtype, n, 2) }, { out: zeros(dtype, n) }, (t, a) => t.copy(a.src, a.out, n), { rtol: 0, atol: 0 });
      compare(dtype, {}, { out: zeros(dtype, n) }, (t, a) => t.fill(dtype, a.out, n - 3, 0.1 + 1 / 3), { rtol: 0, atol: 0 });
      compare(dtype, {}, { out: new Int32Array(n) }, (t, a) => t.fill('i32', a.out, n, -7.9), { rtol: 0, atol: 0 });
    });

    it('gather: transposes, slices, broadcasts and negative strides', () => {
      const src = randomArray(dtype, 4 * 5 * 6, 3);
      const cases: [number, number[], number[]][] = [
        [0, [6, 5, 4], [1, 6, 30]],
        [7, [3, 2, 4], [30, 1, 6]],
        [0, [4, 3, 5, 6], [30, 0, 6, 1]],
        [119, [4, 5], [-30, -6]],
        [0, [2, 1, 2, 1, 2, 1, 2, 1, 2, 3], [60, 0, 30, 0, 12, 0, 6, 0, 3, 1]],
      ];
      for (const [offset, shape, strides] of cases) {
        const total = shape.reduce((x, y) => x * y, 1);
        compare(dtype, { src }, { out: zeros(dtype, total) }, (t, a) => t.gather(dtype, a.src, offset, shape, strides, a.out), { rtol: 0, atol: 0 });
      }
    });

    it('unary ops (sign against the reference table)', () => {
      const n = 777;
      for (const op of ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'relu', 'abs', 'square', 'sigmoid'] as const) {
        const lo = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? 0.01 : -3;
        compare(dtype, { x: randomArray(dtype, n, 4, lo, 3) }, { out: zeros(dtype, n) }, (t, a) => t.unary(op, dtype, a.x, a.out, n), tol(dtype, 10));
      }
      const x = encode(dtype, [-2, -0, 0, 3, NaN, -1e-3, 5e-3, ...Array.from(randomArray('f32', 50, 5))]);
      compare(dtype, { x }, { out: zeros(dtype, x.length) }, (t, a) => t.unary('sign' as 'neg', dtype, a.x, a.out, x.length), { rtol: 0, atol: 0 }, undefined, createReferenceKernels());
    });

    it('binary ops with the bn broadcast rule, scale and axpy', () => {
      const n = 6 * 128;
      for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as const) {
        for (const bn of [n, 1, 128]) {
          compare(dtype, { a: randomArray(dtype, n, 6), b: randomArray(dtype, bn, 7, 0.5, 2) }, { out: zeros(dtype, n) },
            (t, a) => t.binary(op, dtype, a.a, a.b, a.out, n, bn));
        }
      }
      compare(dtype, { x: randomArray(dtype, n, 8) }, { out: zeros(dtype, n) }, (t, a) => t.scale(dtype, a.x, a.out, n, -1.5, 0.25));
      compare(dtype, { x: randomArray(dtype, n, 9) }, { y: randomArray('f32', n, 10) }, (t, a) => t.axpy(dtype, a.x, 'f32', a.y, n, 0.3));
      compare(dtype, { x: randomArray(dtype, n, 9) }, { y: randomArray(dtype, n, 11) }, (t, a) => t.axpy(dtype, a.x, dtype, a.y, n, -2));
    });

    it('sum, sumSquares, hasInfNan, sumRows, sumLastDim', () => {
      const n = 100_003;
      const x = randomArray(dtype, n, 12);
      const dx = onCuda(x);
      const k = cuda().kernels;
      expect(k.sum(dtype, dx, n)).toBeCloseTo(cpu.sum(dtype, x, n), 3);
      expect(k.sumSquares(dtype, dx, n) / cpu.sumSquares(dtype, x, n)).toBeCloseTo(1, 9);
      expect(k.hasInfNan(dtype, dx, n)).toBe(false);
      const bad = x.slice();
      bad[n - 5] = dtype === 'f32' ? NaN : dtype === 'bf16' ? 0x7f80 : 0x7c00;
      expect(k.hasInfNan(dtype, onCuda(bad), n)).toBe(true);
      const rows = 300, cols = 77;
      compare(dtype, { x: randomArray(dtype, rows * cols, 13) }, { out: randomArray('f32', cols, 14) },
        (t, a) => t.sumRows(dtype, a.x, rows, cols, a.out, true), loose(dtype, 20), { rtol: 1e-5, atol: 1e-4 });
      compare(dtype, { x: randomArray(dtype, rows * cols, 15) }, { out: zeros(dtype, rows) },
        (t, a) => t.sumLastDim(dtype, a.x, rows, cols, a.out), loose(dtype, 10));
    });

    it('layerNorm forward, residual forward and backward', () => {
      const rows = 33, cols = 768;
      const x = randomArray(dtype, rows * cols, 16, -2, 3), r = randomArray(dtype, rows * cols, 17);
      const w = randomArray(dtype, cols, 18, 0.5, 1.5), b = randomArray(dtype, cols, 19);
      const stats = { mean: new Float32Array(rows), rstd: new Float32Array(rows) };
      compare(dtype, { x, w, b }, { y: zeros(dtype, rows * cols), ...stats },
        (t, a) => t.layerNormForward(dtype, a.x, a.w, a.b, a.y, a.mean, a.rstd, rows, cols, 1e-5), loose(dtype, 10));
      compare(dtype, { x, r, w, b }, { sum: zeros(dtype, rows * cols), y: zeros(dtype, rows * cols), ...stats },
        (t, a) => t.layerNormResidualForward(dtype, a.x, a.r, a.w, a.b, a.sum, a.y, a.mean, a.rstd, rows, cols, 1e-5), loose(dtype, 10));
      const mean = new Float32Array(rows), rstd = new Float32Array(rows);
      cpu.layerNormForward(dtype, x, w, b, zeros(dtype, rows * cols), mean, rstd, rows, cols, 1e-5);
      compare(dtype, { dy: randomArray(dtype, rows * cols, 20), x, w, mean, rstd },
        { dx: zeros(dtype, rows * cols), dw: randomArray('f32', cols, 21), db: randomArray('f32', cols, 22) },
        (t, a) => t.layerNormBackward(dtype, a.dy, a.x, a.w, a.mean, a.rstd, a.dx, a.dw, a.db, rows, cols), loose(dtype, 10), { rtol: 1e-4, atol: 1e-4 });
    });

    it('gelu and softmax forward and backward', () => {
      const n = 5000;
      const x = randomArray(dtype, n, 23, -4, 4);
      compare(dtype, { x }, { y: zeros(dtype, n) }, (t, a) => t.geluForward(dtype, a.x, a.y, n), loose(dtype));
      compare(dtype, { dy: randomArray(dtype, n, 24), x }, { dx: zeros(dtype, n) }, (t, a) => t.geluBackward(dtype, a.dy, a.x, a.dx, n), loose(dtype));
      const rows = 20, cols = 250;
      const y = zeros(dtype, n);
      cpu.softmaxForward(dtype, x, y, rows, cols);
      compare(dtype, { x }, { y: zeros(dtype, n) }, (t, a) => t.softmaxForward(dtype, a.x, a.y, rows, cols), loose(dtype, 0.1));
      compare(dtype, { dy: randomArray(dtype, n, 25), y }, { dx: zeros(dtype, n) }, (t, a) => t.softmaxBackward(dtype, a.dy, a.y, a.dx, rows, cols), loose(dtype, 0.1));
    });

    it('embedding forward and backward (atomics into the f32 table gradient), bad ids named', () => {
      const n = 300, vocab = 50, dim = 96;
      const id = ids(n, vocab, 26);
      compare(dtype, { id, table: randomArray(dtype, vocab * dim, 27) }, { out: zeros(dtype, n * dim) },
        (t, a) => t.embeddingForward(dtype, a.id, a.table, a.out, n, vocab, dim), { rtol: 0, atol: 0 });
      compare(dtype, { dout: randomArray(dtype, n * dim, 28), id }, { dtable: randomArray('f32', vocab * dim, 29) },
        (t, a) => t.embeddingBackward(dtype, a.dout, a.id, a.dtable, n, vocab, dim), loose(dtype), { rtol: 1e-5, atol: 1e-5 });
      const badIds = id.slice();
      badIds[123] = vocab;
      expect(() => cuda().kernels.embeddingForward(dtype, onCuda(badIds), onCuda(randomArray(dtype, vocab * dim, 27)), onCuda(zeros(dtype, n * dim)), n, vocab, dim))
        .toThrow(/ids\[123\] = 50 is outside \[0, 50\)/);
    });

    it('cross-entropy forward and backward with ignored rows, bad targets named', () => {
      const rows = 40, vocab = 5003;
      const logits = randomArray(dtype, rows * vocab, 30, -5, 5);
      const targets = ids(rows, vocab, 31);
      targets[3] = -1;
      targets[17] = -1;
      compare(dtype, { logits, targets }, { losses: new Float32Array(rows), lse: new Float32Array(rows) },
        (t, a) => t.crossEntropyForward(dtype, a.logits, a.targets, a.losses, a.lse, rows, vocab), loose(dtype), { rtol: 1e-5, atol: 1e-5 });
      const lse = new Float32Array(rows);
      cpu.crossEntropyForward(dtype, logits, targets, new Float32Array(rows), lse, rows, vocab);
      compare(dtype, { logits, targets, lse, dloss: randomArray('f32', rows, 32, 0.5, 2) }, { dlogits: zeros(dtype, rows * vocab) },
        (t, a) => t.crossEntropyBackward(dtype, a.logits, a.targets, a.lse, a.dloss, a.dlogits, rows, vocab), loose(dtype, 0.01));
      const bad = targets.slice();
      bad[9] = -2;
      expect(() => cuda().kernels.crossEntropyForward(dtype, onCuda(logits), onCuda(bad), onCuda(new Float32Array(rows)), onCuda(new Float32Array(rows)), rows, vocab))
        .toThrow(DSShapeError);
    });

    it.each([[64, 100], [80, 130], [32, 64], [128, 40]])('attention forward and backward, head dim %i, T %i', (d, t) => {
      const bh = 3, n = bh * t * d, scale = 1 / Math.sqrt(d);
      const q = randomArray(dtype, n, 33), k = randomArray(dtype, n, 34), v = randomArray(dtype, n, 35);
      compare(dtype, { q, k, v }, { out: zeros(dtype, n), lse: new Float32Array(bh * t) },
        (tb, a) => tb.attentionForward(dtype, a.q, a.k, a.v, a.out, a.lse, bh, t, d, scale), loose(dtype), { rtol: 1e-5, atol: 1e-5 });
      const out = zeros(dtype, n), lse = new Float32Array(bh * t);
      cpu.attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale);
      compare(dtype, { dout: randomArray(dtype, n, 36), q, k, v, out, lse }, { dq: zeros(dtype, n), dk: zeros(dtype, n), dv: zeros(dtype, n) },
        (tb, a) => tb.attentionBackward(dtype, a.dout, a.q, a.k, a.v, a.out, a.lse, a.dq, a.dk, a.dv, bh, t, d, scale), loose(dtype, 5));
    });

    it('dropout masks are bitwise equal to the cpu ones', () => {
      const n = 10_007;
      for (const p of [0, 0.1, 0.5, 1]) {
        compare(dtype, { x: randomArray(dtype, n, 37) }, { out: zeros(dtype, n), mask: new Uint8Array(n) },
          (t, a) => t.dropoutForward(dtype, a.x, a.out, a.mask, n, p, 1234, 99), { rtol: 1e-6, atol: 0 });
      }
    });

    it('fused AdamW with and without the 16-bit copy', () => {
      const n = 4099;
      const state = () => ({ param: randomArray('f32', n, 38), m: randomArray('f32', n, 39, -0.1, 0.1), v: randomArray('f32', n, 40, 0, 0.01) });
      for (const decoupled of [true, false]) {
        compare(dtype, { grad: randomArray(dtype, n, 41) }, { ...state(), out16: new Uint16Array(n) },
          (t, a) => t.adamw({ param: a.param, grad: a.grad, gradDtype: dtype, expAvg: a.m, expAvgSq: a.v, n, lr: 1e-3, beta1: 0.9, beta2: 0.95,
            eps: 1e-8, weightDecay: 0.1, step: 7, biasCorrection: true, decoupled, gradScale: 0.5, out16: a.out16, out16Dtype: 'bf16' }),
          { rtol: 1e-5, atol: 1e-6 }, { rtol: 1e-5, atol: 1e-6 }, cpu, { out16: 'bf16' });
      }
    });
  });

  describe('gemm (cuBLASLt)', () => {
    const cases: { dtype: 'f32' | 'bf16'; outDtype: 'f32' | 'bf16'; transA: boolean; transB: boolean; batch: number; m: number; n: number; k: number; beta: number; sA?: number }[] = [
      { dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 1, m: 33, n: 65, k: 17, beta: 0 },
      { dtype: 'f32', outDtype: 'f32', transA: true, transB: true, batch: 3, m: 20, n: 31, k: 40, beta: 0.5 },
      { dtype: 'bf16', outDtype: 'bf16', transA: false, transB: true, batch: 2, m: 64, n: 48, k: 96, beta: 0 },
      { dtype: 'bf16', outDtype: 'f32', transA: true, transB: false, batch: 4, m: 16, n: 24, k: 72, beta: 1, sA: 0 },
      { dtype: 'f32', outDtype: 'bf16', transA: false, transB: false, batch: 2, m: 9, n: 10, k: 11, beta: 1 },
      { dtype: 'bf16', outDtype: 'bf16', transA: false, transB: false, batch: 1, m: 5, n: 7, k: 0, beta: 2 },
    ];
    it.each(cases)('$dtype -> $outDtype transA=$transA transB=$transB batch=$batch m=$m n=$n k=$k beta=$beta', (g) => {
      const strideA = g.sA ?? g.m * g.k, strideB = g.k * g.n, strideC = g.m * g.n;
      const lenA = Math.max(1, (g.batch - 1) * strideA + g.m * g.k);
      compare(g.outDtype, { a: randomArray(g.dtype, lenA, 42), b: randomArray(g.dtype, g.batch * strideB, 43) }, { c: randomArray(g.outDtype, g.batch * strideC, 44) },
        (t, a) => t.gemm({ dtype: g.dtype, outDtype: g.outDtype, transA: g.transA, transB: g.transB, batch: g.batch, m: g.m, n: g.n, k: g.k,
          alpha: 0.75, beta: g.beta, a: a.a, strideA, b: a.b, strideB, c: a.c, strideC }), loose(g.outDtype, 10));
    });
  });

  it('rejects host arrays and short views with a DSShapeError naming the op and operand', () => {
    const k = cuda().kernels;
    expect(() => k.scale('f32', new Float32Array(4) as never, onCuda(new Float32Array(4)), 4, 1, 0)).toThrow(/scale: x is host memory \(Float32Array\)/);
    expect(() => k.scale('f32', onCuda(new Float32Array(4)), onCuda(new Float32Array(3)), 4, 1, 0)).toThrow(/scale: out has 3 elements but n=4 needs 4/);
    expect(() => k.scale('bf16', onCuda(new Float32Array(4)), onCuda(new Float32Array(4)), 4, 1, 0)).toThrow(/holds f32 elements but dtype bf16 needs u16/);
  });

  it('allocator: zero-filled allocations, reuse from the cache, emptyCache, streams and events', () => {
    const d = cuda();
    const dirty = up(new Uint8Array(3000).fill(7));
    d.free(dirty.allocation); // back to the cache: the next allocation of its size class reuses the block
    const a = d.alloc(3000); // zero-filled
    const z = new Uint8Array(3000).fill(1);
    d.copyToHost(new DeviceArray(a, 'u8', 0, 3000), z);
    expect(z.every((x) => x === 0)).toBe(true);
    const mallocs = d.memoryStats().deviceMallocs;
    d.free(a);
    const b = d.alloc(2900, { uninitialized: true }); // same 3072-byte class
    expect(d.memoryStats().deviceMallocs).toBe(mallocs);
    d.free(b);
    expect(d.memoryStats().cached).toBeGreaterThan(0);
    d.emptyCache();
    expect(d.memoryStats().cached).toBe(0);
    expect(d.streamHandle('compute')).not.toBe(d.streamHandle('comm'));
    const ev = d.createEvent();
    d.recordEvent(ev, 'compute');
    d.waitEvent('comm', ev);
    d.synchronizeEvent(ev);
    expect(d.queryEvent(ev)).toBe(true);
    d.destroyEvent(ev);
    expect(d.describe()).toMatch(/cuBLASLt/);
  });
});
