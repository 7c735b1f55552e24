// GEMM against the reference: every transpose combination, batching with strides and stride-0
// broadcast, alpha/beta, bf16 inputs into f32 or bf16 outputs, at shapes below, at and above the
// register tile (14x32, 6x16, 4x8) and the cache blocks (kc 2048 bf16 / 1024 f32 on AVX-512, 512 on AVX2; mc 84 or 96), under
// every ISA; and equal results for one and several threads.
import { describe, expect, it } from 'vitest';

import { createReferenceKernels } from '../../src/reference/index.js';
import type { HostGemmArgs as GemmArgs } from '../../src/kernels/table.js';
import { cpu, expectCloseArrays, forEachIsa, randomArray, clone } from './helpers.js';

const ref = createReferenceKernels();

type Case = { m: number; n: number; k: number; batch?: number; bcastB?: boolean };
const SHAPES: Case[] = [
  { m: 1, n: 1, k: 1 },
  { m: 1, n: 17, k: 3 },
  { m: 13, n: 1, k: 5 },
  { m: 14, n: 32, k: 8 },
  { m: 6, n: 16, k: 2 },
  { m: 15, n: 33, k: 257 },
  { m: 29, n: 70, k: 131 },
  { m: 170, n: 45, k: 300 },
  { m: 3, n: 4, k: 0 },
  { m: 5, n: 7, k: 9, batch: 3 },
  { m: 9, n: 31, k: 17, batch: 4, bcastB: true },
];

function args(c: Case, dtype: 'f32' | 'bf16', outDtype: 'f32' | 'bf16', transA: boolean, transB: boolean, alpha: number, beta: number, seed: number): GemmArgs {
  const batch = c.batch ?? 1;
  const strideA = c.m * c.k + 3;  // padded, so operands do not abut
  const strideB = c.bcastB ? 0 : c.k * c.n + 1;
  const strideC = c.m * c.n + 2;
  return {
    dtype, outDtype, transA, transB, batch, m: c.m, n: c.n, k: c.k, alpha, beta,
    a: randomArray(dtype, Math.max(1, batch * strideA), seed),
    strideA,
    b: randomArray(dtype, Math.max(1, c.bcastB ? c.k * c.n : batch * strideB), seed + 1),
    strideB,
    c: randomArray(outDtype, batch * strideC, seed + 2),
    strideC,
  };
}

describe('gemm', () => {
  for (const [dtype, outDtype] of [['f32', 'f32'], ['bf16', 'f32'], ['bf16', 'bf16'], ['f32', 'bf16']] as const) {
    it(`${dtype} x ${dtype} -> ${outDtype}, all transposes, batched and broadcast`, () => {
      let seed = 1;
      for (const c of SHAPES) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const [alpha, beta] = seed % 3 === 0 ? [0.5, -1.25] : seed % 3 === 1 ? [1, 0] : [-2, 1];
            const g = args(c, dtype, outDtype, transA, transB, alpha, beta, seed++);
            const want = clone(g.c);
            ref.gemm({ ...g, c: want });
            // Sums of k products of values in [-1, 1): the tolerance grows with k.
            const t = outDtype === 'bf16' ? { rtol: 1e-2, atol: 1e-2 * Math.sqrt(c.k + 1) } : { rtol: 1e-5, atol: 2e-6 * (c.k + 1) };
            forEachIsa(() => {
              const got = clone(g.c);
              cpu.gemm({ ...g, c: got });
              expectCloseArrays(`gemm ${JSON.stringify(c)} tA=${transA} tB=${transB} a=${alpha} b=${beta}`, outDtype, got, want, t);
            });
          }
        }
      }
    });
  }

  it('crosses every cache block: m > mc, k > kc (f32 and bf16), n split among threads', () => {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const transB of [false, true]) {  // B packed from rows (interleaved k lines) and from columns
        const c = { m: 190, n: 77, k: 2100 };
        const g = args(c, dtype, 'f32', false, transB, 1, 0, 99);
        const want = clone(g.c);
        ref.gemm({ ...g, c: want });
        forEachIsa(() => {
          const got = clone(g.c);
          cpu.gemm({ ...g, c: got });
          expectCloseArrays(`gemm ${dtype} tB=${transB} ${JSON.stringify(c)}`, 'f32', got, want, { rtol: 1e-5, atol: 2e-6 * c.k });
        });
      }
    }
  });

  it('crosses nc = 4096 and the 256 x 4096 workspace tiles of a bf16 C', () => {
    // The blocking is the same code under every ISA: the selected (best) one is enough here.
    for (const [dtype, outDtype, m] of [['f32', 'f32', 20], ['bf16', 'bf16', 257]] as const) {
      const c = { m, n: 4097, k: 3 };
      const g = args(c, dtype, outDtype, false, false, 1, 0.5, 123);
      const want = clone(g.c);
      ref.gemm({ ...g, c: want });
      const got = clone(g.c);
      cpu.gemm({ ...g, c: got });
      expectCloseArrays(`gemm ${dtype}->${outDtype} ${JSON.stringify(c)}`, outDtype, got, want, outDtype === 'bf16' ? { rtol: 1e-2, atol: 1e-2 } : { rtol: 1e-5, atol: 1e-5 });
    }
  });

  it('beta = 0 never reads C (NaN in C does not leak)', () => {
    const g = args({ m: 20, n: 40, k: 10 }, 'f32', 'f32', false, false, 1, 0, 5);
    (g.c as Float32Array).fill(NaN);
    forEachIsa(() => {
      const got = clone(g.c);
      cpu.gemm({ ...g, c: got });
      expect(got.subarray(0, 20 * 40).some((v) => Number.isNaN(v))).toBe(false);
      expect(Number.isNaN(got[20 * 40]!)).toBe(true);  // the padding after C is left alone
    });
  });

  it('a bf16 C is the f32 product rounded once to nearest even, NaN included, and never read when beta = 0', () => {
    // k <= kc: the microkernel rounds as it stores; k > kc: the f32 workspace path. Both must give
    // exactly the rounding of the f32 result of the same kernel. alpha = 2^-130 makes most of C
    // subnormal, which the AVX512_BF16 store (vcvtne2ps2bf16 flushes them) must hand to the exact rounding.
    for (const [dtype, k, alpha] of [['bf16', 300, 1], ['f32', 300, 1], ['bf16', 2100, 1], ['bf16', 300, 2 ** -130]] as const) {
      const g = args({ m: 33, n: 70, k }, dtype, 'f32', false, false, alpha, 0, 11);
      if (dtype === 'f32') (g.a as Float32Array)[5 * k] = NaN;  // row 5 of C becomes NaN
      else (g.a as Uint16Array)[5 * k] = 0x7fc0;
      forEachIsa(() => {
        const f32 = new Float32Array(33 * 70);
        cpu.gemm({ ...g, c: f32, strideC: 0 });
        const want = new Uint16Array(f32.length + 1);
        cpu.cast('f32', f32, 'bf16', want, f32.length);
        want[f32.length] = 0x7fc1;
        const got = new Uint16Array(f32.length + 1).fill(0x7fc1);  // NaN everywhere: must not be read
        cpu.gemm({ ...g, outDtype: 'bf16', c: got, strideC: 0 });
        expect(Number.isNaN(f32[5 * 70]!)).toBe(true);
        expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      });
    }
  });

  it('one product balanced over threads (row units, column units, several k blocks, bf16 C from registers and from the workspace) matches the reference and is bit-identical on 1 to 4 threads', () => {
    // Sized for the dynamic split (batch 1, above 2 MFLOP): rows of C in mc blocks with one k block
    // and with several (enough blocks for 4 threads, op(B) under 2 MiB); columns of C with one k block.
    const cases: [Case, 'f32' | 'bf16', 'f32' | 'bf16', boolean, boolean][] = [
      [{ m: 700, n: 40, k: 100 }, 'f32', 'f32', false, false],
      [{ m: 3200, n: 24, k: 2100 }, 'bf16', 'f32', true, false],
      [{ m: 3200, n: 24, k: 2100 }, 'bf16', 'bf16', false, true],
      [{ m: 30, n: 900, k: 120 }, 'bf16', 'bf16', true, true],
      [{ m: 30, n: 900, k: 120 }, 'f32', 'f32', false, true],
    ];
    const threads = cpu.getNumThreads();
    try {
      for (const [c, dtype, outDtype, transA, transB] of cases) {
        const g = args(c, dtype, outDtype, transA, transB, 0.75, 0.5, 31);
        const want = clone(g.c);
        ref.gemm({ ...g, c: want });
        forEachIsa((isa) => {
          const results = [1, 2, 3, 4].map((t) => {
            cpu.setNumThreads(t);
            const got = clone(g.c);
            cpu.gemm({ ...g, c: got });
            return got;
          });
          const s = `gemm ${dtype}->${outDtype} ${JSON.stringify(c)} tA=${transA} tB=${transB} (${isa})`;
          expectCloseArrays(s, outDtype, results[0]!, want, outDtype === 'bf16' ? { rtol: 1e-2, atol: 1e-2 } : { rtol: 1e-5, atol: 2e-6 * c.k });
          for (const r of results.slice(1)) expect(Buffer.from(r.buffer).equals(Buffer.from(results[0]!.buffer)), s).toBe(true);
        });
      }
      // beta = 0 does not read C on the balanced path either, nor past it.
      cpu.setNumThreads(2);
      const g = args({ m: 700, n: 40, k: 100 }, 'f32', 'f32', false, false, 1, 0, 5);
      (g.c as Float32Array).fill(NaN);
      const got = clone(g.c);
      cpu.gemm({ ...g, c: got });
      expect(got.subarray(0, 700 * 40).some((v) => Number.isNaN(v))).toBe(false);
      expect(Number.isNaN(got[700 * 40]!)).toBe(true);
    } finally {
      cpu.setNumThreads(threads);
    }
  });

  it('gemmBias is gemm with beta = 1 onto C filled with the bias, bit for bit, on every path and thread count', () => {
    // The small shapes (one fixed slice per thread, k = 0, batches, broadcast B), the balanced ones
    // (row and column units, a bf16 C through the workspace), f32 C over several k blocks, and a
    // batched bf16 C over several k blocks (the fixed split's workspace).
    const cases: [Case, 'f32' | 'bf16', 'f32' | 'bf16', boolean, boolean][] = [
      ...SHAPES.flatMap((c): [Case, 'f32' | 'bf16', 'f32' | 'bf16', boolean, boolean][] => [[c, 'f32', 'f32', false, true], [c, 'bf16', 'bf16', true, false]]),
      [{ m: 700, n: 40, k: 100 }, 'bf16', 'bf16', false, true],
      [{ m: 3200, n: 24, k: 2100 }, 'bf16', 'bf16', false, true],
      [{ m: 3200, n: 24, k: 2100 }, 'f32', 'f32', true, false],
      [{ m: 30, n: 900, k: 120 }, 'bf16', 'bf16', false, true],
      [{ m: 40, n: 50, k: 2100, batch: 2 }, 'bf16', 'bf16', false, false],
    ];
    const threads = cpu.getNumThreads();
    try {
      for (const [c, dtype, outDtype, transA, transB] of cases) {
        const g = args(c, dtype, outDtype, transA, transB, 0.75, 0, 41);
        const bias = randomArray(outDtype, c.n, 43);
        forEachIsa((isa) => {
          for (const t of [1, 2, 3, 4]) {
            cpu.setNumThreads(t);
            const want = clone(g.c);
            for (let p = 0; p < g.batch; p++)
              for (let i = 0; i < c.m; i++) for (let j = 0; j < c.n; j++) want[p * g.strideC + i * c.n + j] = bias[j]!;
            cpu.gemm({ ...g, beta: 1, c: want });
            const got = clone(g.c);
            cpu.gemmBias!({ ...g, c: got }, bias);
            const s = `gemmBias ${dtype}->${outDtype} ${JSON.stringify(c)} tA=${transA} tB=${transB} (${isa}, ${t} threads)`;
            expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), s).toBe(true);
          }
        });
      }
    } finally {
      cpu.setNumThreads(threads);
    }
    const g = args({ m: 4, n: 5, k: 3 }, 'f32', 'f32', false, false, 1, 0.5, 1);
    expect(() => cpu.gemmBias!(g, randomArray('f32', 5, 2))).toThrow(/beta must be 0/);
    expect(() => cpu.gemmBias!({ ...g, beta: 0 }, randomArray('f32', 4, 2))).toThrow(/bias/);
  });

  it('gives bit-identical f32 results on 1, 2 and 3 threads', () => {
    const g = args({ m: 300, n: 260, k: 150, batch: 2 }, 'f32', 'f32', false, false, 1, 0, 7);
    const threads = cpu.getNumThreads();
    const results: Float32Array[] = [];
    try {
      for (const t of [1, 2, 3]) {
        cpu.setNumThreads(t);
        expect(cpu.getNumThreads()).toBe(t);
        const got = clone(g.c) as Float32Array;
        cpu.gemm({ ...g, c: got });
        results.push(got);
      }
    } finally {
      cpu.setNumThreads(threads);
    }
    expect(Buffer.from(results[1]!.buffer).equals(Buffer.from(results[0]!.buffer))).toBe(true);
    expect(Buffer.from(results[2]!.buffer).equals(Buffer.from(results[0]!.buffer))).toBe(true);
  });
});
