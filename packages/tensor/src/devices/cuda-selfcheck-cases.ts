// The cases of the cuda self-check: every entry of the cuda KernelTable against its cpu twin
// (src/backends/cpu.ts) on the same seeded inputs, in every float dtype the entry takes, plus the
// errors the GPU itself must report (out-of-range ids and targets) and the allocator, streams and
// events of the device. Each case is one kernel call (or one small device scenario); its inputs are
// made when it runs, so listing the cases costs nothing and needs no GPU.
import { DSShapeError } from '../errors.js';
import type { FloatDType, KernelTable, UnaryOp } from '../kernels/table.js';
import { DeviceArray } from './device-array.js';
import { EXACT, encode, loose, randomArray, randomIds, tol, zeros, type SelfCheckContext, type SelfCheckOutput } from './cuda-selfcheck-kit.js';

/** One case: `kernel` is the KernelTable entry it checks ('device' for the allocator, streams and events). */
export interface SelfCheckCaseSpec {
  name: string;
  /** The float dtype it runs in; gemm cases name input and output (`bf16->f32`). */
  dtype: string;
  kernel: Exclude<keyof KernelTable, 'name' | 'setNumThreads' | 'getNumThreads'> | 'device';
  run(c: SelfCheckContext): SelfCheckOutput[];
}

const spec = (kernel: SelfCheckCaseSpec['kernel'], name: string, dtype: string, run: SelfCheckCaseSpec['run']): SelfCheckCaseSpec => ({ kernel, name, dtype, run });

function copyCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const n = 1000;
  const casts = (['f32', 'bf16', 'f16', 'i32', 'u8'] as const).map((to) => spec('cast', `cast to ${to}`, dtype, (c) => {
    const out = to === 'f32' ? new Float32Array(n) : to === 'i32' ? new Int32Array(n) : to === 'u8' ? new Uint8Array(n) : new Uint16Array(n);
    return c.compare(dtype, { src: randomArray(dtype, n, 1, -300, 300) }, { out }, (t, a) => t.cast(dtype, a.src, to, a.out, n), { tol: EXACT, f32Tol: EXACT });
  }));
  // Transposes, slices, broadcasts (stride 0), negative strides and a rank-10 view of a [4, 5, 6] array.
  const views: [number, number[], number[]][] = [
    [0, [6, 5, 4], [1, 6, 30]],
    [7, [3, 2, 4], [30, 1, 6]],
    [0, [4, 3, 5, 6], [30, 0, 6, 1]],
    [119, [4, 5], [-30, -6]],
    [0, [2, 1, 2, 1, 2, 1, 2, 1, 2, 3], [60, 0, 30, 0, 12, 0, 6, 0, 3, 1]],
  ];
  const gathers = views.map(([offset, shape, strides]) => spec('gather', `gather [${shape}] strides [${strides}] offset ${offset}`, dtype, (c) => {
    const total = shape.reduce((x, y) => x * y, 1);
    return c.compare(dtype, { src: randomArray(dtype, 4 * 5 * 6, 3) }, { out: zeros(dtype, total) }, (t, a) => t.gather(dtype, a.src, offset, shape, strides, a.out), { tol: EXACT });
  }));
  return [
    ...casts,
    spec('copy', 'copy', dtype, (c) => c.compare(dtype, { src: randomArray(dtype, n, 2) }, { out: zeros(dtype, n) }, (t, a) => t.copy(a.src, a.out, n), { tol: EXACT })),
    spec('fill', 'fill', dtype, (c) => c.compare(dtype, {}, { out: zeros(dtype, n) }, (t, a) => t.fill(dtype, a.out, n - 3, 0.1 + 1 / 3), { tol: EXACT })),
    spec('fill', 'fill i32 (truncates)', dtype, (c) => c.compare(dtype, {}, { out: new Int32Array(n) }, (t, a) => t.fill('i32', a.out, n, -7.9), { tol: EXACT })),
    ...gathers,
  ];
}

function elementwiseCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const unaryOps: UnaryOp[] = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'relu', 'abs', 'square', 'sigmoid'];
  const unary = unaryOps.map((op) => spec('unary', `unary(${op})`, dtype, (c) => {
    const n = 777;
    const lo = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? 0.01 : -3;
    return c.compare(dtype, { x: randomArray(dtype, n, 4, lo, 3) }, { out: zeros(dtype, n) }, (t, a) => t.unary(op, dtype, a.x, a.out, n), { tol: tol(dtype, 10) });
  }));
  // sign is checked against the reference table, with its signed zeros and NaN.
  const sign = spec('unary', 'unary(sign) against the reference table', dtype, (c) => {
    const x = encode(dtype, [-2, -0, 0, 3, NaN, -1e-3, 5e-3, ...Array.from(randomArray('f32', 50, 5))]);
    return c.compare(dtype, { x }, { out: zeros(dtype, x.length) }, (t, a) => t.unary('sign', dtype, a.x, a.out, x.length), { tol: EXACT, twin: c.reference });
  });
  const n = 6 * 128;
  const binary = (['add', 'sub', 'mul', 'div', 'max', 'min'] as const).flatMap((op) => [n, 1, 128].map((bn) => spec('binary', `binary(${op}) bn=${bn}`, dtype, (c) =>
    c.compare(dtype, { a: randomArray(dtype, n, 6), b: randomArray(dtype, bn, 7, 0.5, 2) }, { out: zeros(dtype, n) }, (t, a) => t.binary(op, dtype, a.a, a.b, a.out, n, bn)))));
  return [
    ...unary,
    sign,
    ...binary,
    spec('scale', 'scale', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, n, 8) }, { out: zeros(dtype, n) }, (t, a) => t.scale(dtype, a.x, a.out, n, -1.5, 0.25))),
    spec('axpy', 'axpy into an f32 y', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, n, 9) }, { y: randomArray('f32', n, 10) }, (t, a) => t.axpy(dtype, a.x, 'f32', a.y, n, 0.3))),
    spec('axpy', "axpy into a y of x's dtype", dtype, (c) => c.compare(dtype, { x: randomArray(dtype, n, 9) }, { y: randomArray(dtype, n, 11) }, (t, a) => t.axpy(dtype, a.x, dtype, a.y, n, -2))),
  ];
}

function reductionCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const n = 100_003;
  const rows = 300, cols = 77;
  const nonFinite = dtype === 'f32' ? NaN : dtype === 'bf16' ? 0x7f80 : 0x7c00; // f32 NaN; bf16 and f16 +inf bits
  return [
    spec('sum', 'sum', dtype, (c) => {
      const x = randomArray(dtype, n, 12);
      return [c.scalar('sum', c.kernels.sum(dtype, c.operand(x), n), c.cpu.sum(dtype, x, n), { rtol: 0, atol: 5e-4 })];
    }),
    spec('sumSquares', 'sumSquares', dtype, (c) => {
      const x = randomArray(dtype, n, 12);
      return [c.scalar('sumSquares', c.kernels.sumSquares(dtype, c.operand(x), n), c.cpu.sumSquares(dtype, x, n), { rtol: 5e-10, atol: 0 })];
    }),
    spec('hasInfNan', 'hasInfNan', dtype, (c) => {
      const x = randomArray(dtype, n, 12);
      const bad = x.slice();
      bad[n - 5] = nonFinite;
      const clean = c.kernels.hasInfNan(dtype, c.operand(x), n);
      const dirty = c.kernels.hasInfNan(dtype, c.operand(bad), n);
      return [c.expect('false on finite values', clean === false, `got ${clean}`), c.expect(`true with an Inf/NaN at [${n - 5}]`, dirty === true, `got ${dirty}`)];
    }),
    spec('sumRows', 'sumRows (accumulate)', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, rows * cols, 13) }, { out: randomArray('f32', cols, 14) },
      (t, a) => t.sumRows(dtype, a.x, rows, cols, a.out, true), { tol: loose(dtype, 20), f32Tol: { rtol: 1e-5, atol: 1e-4 } })),
    spec('sumLastDim', 'sumLastDim', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, rows * cols, 15) }, { out: zeros(dtype, rows) },
      (t, a) => t.sumLastDim(dtype, a.x, rows, cols, a.out), { tol: loose(dtype, 10) })),
  ];
}

function normCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const rows = 33, cols = 768, n = rows * cols;
  const inputs = () => ({ x: randomArray(dtype, n, 16, -2, 3), w: randomArray(dtype, cols, 18, 0.5, 1.5), b: randomArray(dtype, cols, 19) });
  const stats = () => ({ mean: new Float32Array(rows), rstd: new Float32Array(rows) });
  const act = 5000, sRows = 20, sCols = 250;
  return [
    spec('layerNormForward', 'layerNormForward', dtype, (c) => c.compare(dtype, inputs(), { y: zeros(dtype, n), ...stats() },
      (t, a) => t.layerNormForward(dtype, a.x, a.w, a.b, a.y, a.mean, a.rstd, rows, cols, 1e-5), { tol: loose(dtype, 10) })),
    spec('layerNormResidualForward', 'layerNormResidualForward', dtype, (c) => c.compare(dtype, { ...inputs(), r: randomArray(dtype, n, 17) },
      { sum: zeros(dtype, n), y: zeros(dtype, n), ...stats() },
      (t, a) => t.layerNormResidualForward(dtype, a.x, a.r, a.w, a.b, a.sum, a.y, a.mean, a.rstd, rows, cols, 1e-5), { tol: loose(dtype, 10) })),
    spec('layerNormBackward', 'layerNormBackward (accumulates dw, db)', dtype, (c) => {
      const { x, w, b } = inputs();
      const { mean, rstd } = stats();
      c.cpu.layerNormForward(dtype, x, w, b, zeros(dtype, n), mean, rstd, rows, cols, 1e-5);
      return c.compare(dtype, { dy: randomArray(dtype, n, 20), x, w, mean, rstd },
        { dx: zeros(dtype, n), dw: randomArray('f32', cols, 21), db: randomArray('f32', cols, 22) },
        (t, a) => t.layerNormBackward(dtype, a.dy, a.x, a.w, a.mean, a.rstd, a.dx, a.dw, a.db, rows, cols), { tol: loose(dtype, 10), f32Tol: { rtol: 1e-4, atol: 1e-4 } });
    }),
    spec('geluForward', 'geluForward', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, act, 23, -4, 4) }, { y: zeros(dtype, act) },
      (t, a) => t.geluForward(dtype, a.x, a.y, act), { tol: loose(dtype) })),
    spec('geluBackward', 'geluBackward', dtype, (c) => c.compare(dtype, { dy: randomArray(dtype, act, 24), x: randomArray(dtype, act, 23, -4, 4) }, { dx: zeros(dtype, act) },
      (t, a) => t.geluBackward(dtype, a.dy, a.x, a.dx, act), { tol: loose(dtype) })),
    spec('softmaxForward', 'softmaxForward', dtype, (c) => c.compare(dtype, { x: randomArray(dtype, act, 23, -4, 4) }, { y: zeros(dtype, act) },
      (t, a) => t.softmaxForward(dtype, a.x, a.y, sRows, sCols), { tol: loose(dtype, 0.1) })),
    spec('softmaxBackward', 'softmaxBackward', dtype, (c) => {
      const y = zeros(dtype, act);
      c.cpu.softmaxForward(dtype, randomArray(dtype, act, 23, -4, 4), y, sRows, sCols);
      return c.compare(dtype, { dy: randomArray(dtype, act, 25), y }, { dx: zeros(dtype, act) },
        (t, a) => t.softmaxBackward(dtype, a.dy, a.y, a.dx, sRows, sCols), { tol: loose(dtype, 0.1) });
    }),
  ];
}

function lossCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const n = 300, vocab = 50, dim = 96;
  const rows = 40, classes = 5003;
  const targets = () => {
    const t = randomIds(rows, classes, 31);
    t[3] = -1; // ignored rows
    t[17] = -1;
    return t;
  };
  const logits = () => randomArray(dtype, rows * classes, 30, -5, 5);
  return [
    spec('embeddingForward', 'embeddingForward', dtype, (c) => c.compare(dtype, { id: randomIds(n, vocab, 26), table: randomArray(dtype, vocab * dim, 27) }, { out: zeros(dtype, n * dim) },
      (t, a) => t.embeddingForward(dtype, a.id, a.table, a.out, n, vocab, dim), { tol: EXACT })),
    spec('embeddingBackward', 'embeddingBackward (atomics into the f32 table gradient)', dtype, (c) =>
      c.compare(dtype, { dout: randomArray(dtype, n * dim, 28), id: randomIds(n, vocab, 26) }, { dtable: randomArray('f32', vocab * dim, 29) },
        (t, a) => t.embeddingBackward(dtype, a.dout, a.id, a.dtable, n, vocab, dim), { tol: loose(dtype), f32Tol: { rtol: 1e-5, atol: 1e-5 } })),
    spec('embeddingForward', 'embeddingForward names an out-of-range id', dtype, (c) => {
      const ids = randomIds(n, vocab, 26);
      ids[123] = vocab;
      return [c.throws('throws on ids[123] = vocab', () => c.kernels.embeddingForward(dtype, c.operand(ids), c.operand(randomArray(dtype, vocab * dim, 27)), c.operand(zeros(dtype, n * dim)), n, vocab, dim),
        /ids\[123\] = 50 is outside \[0, 50\)/)];
    }),
    spec('crossEntropyForward', 'crossEntropyForward with ignored rows', dtype, (c) => c.compare(dtype, { logits: logits(), targets: targets() },
      { losses: new Float32Array(rows), lse: new Float32Array(rows) },
      (t, a) => t.crossEntropyForward(dtype, a.logits, a.targets, a.losses, a.lse, rows, classes), { tol: loose(dtype), f32Tol: { rtol: 1e-5, atol: 1e-5 } })),
    spec('crossEntropyBackward', 'crossEntropyBackward with ignored rows', dtype, (c) => {
      const [l, tg, lse] = [logits(), targets(), new Float32Array(rows)];
      c.cpu.crossEntropyForward(dtype, l, tg, new Float32Array(rows), lse, rows, classes);
      return c.compare(dtype, { logits: l, targets: tg, lse, dloss: randomArray('f32', rows, 32, 0.5, 2) }, { dlogits: zeros(dtype, rows * classes) },
        (t, a) => t.crossEntropyBackward(dtype, a.logits, a.targets, a.lse, a.dloss, a.dlogits, rows, classes), { tol: loose(dtype, 0.01) });
    }),
    spec('crossEntropyForward', 'crossEntropyForward rejects a target below -1', dtype, (c) => {
      const bad = targets();
      bad[9] = -2;
      return [c.throws('throws DSShapeError on targets[9] = -2', () => c.kernels.crossEntropyForward(dtype, c.operand(logits()), c.operand(bad), c.operand(new Float32Array(rows)), c.operand(new Float32Array(rows)), rows, classes),
        DSShapeError)];
    }),
  ];
}

function attentionCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const bh = 3;
  return [[64, 100], [80, 130], [32, 64], [128, 40]].flatMap(([d, t]) => {
    const n = bh * t! * d!, scale = 1 / Math.sqrt(d!);
    const qkv = () => ({ q: randomArray(dtype, n, 33), k: randomArray(dtype, n, 34), v: randomArray(dtype, n, 35) });
    return [
      spec('attentionForward', `attentionForward head dim ${d}, T ${t}`, dtype, (c) => c.compare(dtype, qkv(), { out: zeros(dtype, n), lse: new Float32Array(bh * t!) },
        (tb, a) => tb.attentionForward(dtype, a.q, a.k, a.v, a.out, a.lse, bh, t!, d!, scale), { tol: loose(dtype), f32Tol: { rtol: 1e-5, atol: 1e-5 } })),
      spec('attentionBackward', `attentionBackward head dim ${d}, T ${t}`, dtype, (c) => {
        const { q, k, v } = qkv();
        const out = zeros(dtype, n), lse = new Float32Array(bh * t!);
        c.cpu.attentionForward(dtype, q, k, v, out, lse, bh, t!, d!, scale);
        return c.compare(dtype, { dout: randomArray(dtype, n, 36), q, k, v, out, lse }, { dq: zeros(dtype, n), dk: zeros(dtype, n), dv: zeros(dtype, n) },
          (tb, a) => tb.attentionBackward(dtype, a.dout, a.q, a.k, a.v, a.out, a.lse, a.dq, a.dk, a.dv, bh, t!, d!, scale), { tol: loose(dtype, 5) });
      }),
    ];
  });
}

function optimCases(dtype: FloatDType): SelfCheckCaseSpec[] {
  const n = 10_007, m = 4099;
  // The mask must equal the cpu's bit for bit (it is counter-based); out within one rounding.
  const dropout = [0, 0.1, 0.5, 1].map((p) => spec('dropoutForward', `dropoutForward p=${p} (mask bit for bit)`, dtype, (c) =>
    c.compare(dtype, { x: randomArray(dtype, n, 37) }, { out: zeros(dtype, n), mask: new Uint8Array(n) },
      (t, a) => t.dropoutForward(dtype, a.x, a.out, a.mask, n, p, 1234, 99), { tol: { rtol: 1e-6, atol: 0 } })));
  const adamw = [true, false].map((decoupled) => spec('adamw', `adamw ${decoupled ? 'decoupled (AdamW)' : 'L2 (Adam)'} with the bf16 copy`, dtype, (c) => {
    const state = { param: randomArray('f32', m, 38), m: randomArray('f32', m, 39, -0.1, 0.1), v: randomArray('f32', m, 40, 0, 0.01), out16: new Uint16Array(m) };
    return c.compare(dtype, { grad: randomArray(dtype, m, 41) }, state,
      (t, a) => t.adamw({ param: a.param, grad: a.grad, gradDtype: dtype, expAvg: a.m, expAvgSq: a.v, n: m, lr: 1e-3, beta1: 0.9, beta2: 0.95,
        eps: 1e-8, weightDecay: 0.1, step: 7, biasCorrection: true, decoupled, gradScale: 0.5, out16: a.out16, out16Dtype: 'bf16' }),
      { tol: { rtol: 1e-5, atol: 1e-6 }, f32Tol: { rtol: 1e-5, atol: 1e-6 }, u16As: { out16: 'bf16' } });
  }));
  return [...dropout, ...adamw];
}

interface GemmCase { dtype: 'f32' | 'bf16'; outDtype: 'f32' | 'bf16'; transA: boolean; transB: boolean; batch: number; m: number; n: number; k: number; beta: number; sA?: number }

/** cuBLASLt: both transposes, batches (one with A broadcast, strideA 0), mixed in/out dtypes, k = 0. */
const GEMMS: readonly GemmCase[] = [
  { dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 1, m: 33, n: 65, k: 17, beta: 0 },
  { dtype: 'f32', outDtype: 'f32', transA: true, transB: true, batch: 3, m: 20, n: 31, k: 40, beta: 0.5 },
  { dtype: 'bf16', outDtype: 'bf16', transA: false, transB: true, batch: 2, m: 64, n: 48, k: 96, beta: 0 },
  { dtype: 'bf16', outDtype: 'f32', transA: true, transB: false, batch: 4, m: 16, n: 24, k: 72, beta: 1, sA: 0 },
  { dtype: 'f32', outDtype: 'bf16', transA: false, transB: false, batch: 2, m: 9, n: 10, k: 11, beta: 1 },
  { dtype: 'bf16', outDtype: 'bf16', transA: false, transB: false, batch: 1, m: 5, n: 7, k: 0, beta: 2 },
];

function gemmCase(g: GemmCase): SelfCheckCaseSpec {
  const name = `gemm transA=${g.transA} transB=${g.transB} batch=${g.batch} m=${g.m} n=${g.n} k=${g.k} beta=${g.beta}${g.sA === 0 ? ' strideA=0' : ''}`;
  return spec('gemm', name, `${g.dtype}->${g.outDtype}`, (c) => {
    const strideA = g.sA ?? g.m * g.k, strideB = g.k * g.n, strideC = g.m * g.n;
    const lenA = Math.max(1, (g.batch - 1) * strideA + g.m * g.k);
    return c.compare(g.outDtype, { a: randomArray(g.dtype, lenA, 42), b: randomArray(g.dtype, g.batch * strideB, 43) }, { c: randomArray(g.outDtype, g.batch * strideC, 44) },
      (t, a) => t.gemm({ dtype: g.dtype, outDtype: g.outDtype, transA: g.transA, transB: g.transB, batch: g.batch, m: g.m, n: g.n, k: g.k,
        alpha: 0.75, beta: g.beta, a: a.a, strideA, b: a.b, strideB, c: a.c, strideC }), { tol: loose(g.outDtype, 10) });
  });
}

/** Zero-filled allocations, reuse from the size-class cache, emptyCache, two streams and an event between them. */
const deviceCase = spec('device', 'allocator, streams and events', '-', (c) => {
  const d = c.device;
  const dirty = d.alloc(3000, { uninitialized: true });
  d.copyFromHost(new Uint8Array(3000).fill(7), new DeviceArray(dirty, 'u8', 0, 3000));
  d.free(dirty); // back to the cache: the next allocation of its size class reuses the block
  const a = d.alloc(3000); // zero-filled
  const z = new Uint8Array(3000).fill(1);
  d.copyToHost(new DeviceArray(a, 'u8', 0, 3000), z);
  const mallocs = d.memoryStats().deviceMallocs;
  d.free(a);
  const b = d.alloc(2900, { uninitialized: true }); // same 3072-byte class
  const reused = d.memoryStats().deviceMallocs === mallocs;
  d.free(b);
  const cached = d.memoryStats().cached;
  d.emptyCache();
  const afterEmpty = d.memoryStats().cached;
  const ev = d.createEvent();
  d.recordEvent(ev, 'compute');
  d.waitEvent('comm', ev);
  d.synchronizeEvent(ev);
  const done = d.queryEvent(ev);
  d.destroyEvent(ev);
  const described = d.describe();
  return [
    c.expect('alloc() zero-fills a reused block', z.every((x) => x === 0), `${z.filter((x) => x !== 0).length} of 3000 bytes are not 0`),
    c.expect('a freed block is reused for its size class', reused, `deviceMallocs went from ${mallocs} to ${d.memoryStats().deviceMallocs}`),
    c.expect('freed blocks are cached', cached > 0, `cached is ${cached}`),
    c.expect('emptyCache() returns every cached block', afterEmpty === 0, `cached is ${afterEmpty} after emptyCache()`),
    c.expect('compute and comm are distinct streams', d.streamHandle('compute') !== d.streamHandle('comm'), 'both handles are equal'),
    c.expect('a synchronized event reports done', done, 'queryEvent returned false after synchronizeEvent'),
    c.expect('describe() names cuBLASLt', /cuBLASLt/.test(described), `describe() is '${described}'`),
  ];
});

/** Every case, per float dtype in `dtypes` (gemm cases whose input and output dtypes are both in it), then the device case. */
export function selfCheckCases(dtypes: readonly FloatDType[]): SelfCheckCaseSpec[] {
  const perDtype = dtypes.flatMap((d) => [...copyCases(d), ...elementwiseCases(d), ...reductionCases(d), ...normCases(d), ...lossCases(d), ...attentionCases(d), ...optimCases(d)]);
  const gemms = GEMMS.filter((g) => dtypes.includes(g.dtype) && dtypes.includes(g.outDtype)).map(gemmCase);
  return [...perDtype, ...gemms, deviceCase];
}
