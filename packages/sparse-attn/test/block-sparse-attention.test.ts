// Block-sparse attention against dense attention: every mode equals @ds/tensor's maskedAttention
// with the layout applied as an additive mask, outputs and gradients, in float64 (a Runtime in
// f64Check mode on the reference kernels); a layout covering everything equals plain dense attention;
// and the native (f32, cpu kernels) path agrees within f32 tolerances.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import {
  createReferenceKernels,
  fromArray,
  Generator,
  maskedAttention,
  causalAttention,
  mul,
  sum,
  Runtime,
  tidy,
  withRuntime,
  type Tensor,
} from '@ds/tensor';

import {
  BigBirdSparsityConfig,
  blockSparseAttention,
  BSLongformerSparsityConfig,
  DenseSparsityConfig,
  FixedSparsityConfig,
  LocalSlidingWindowSparsityConfig,
  MASKED,
  planLayout,
  VariableSparsityConfig,
  type BlockLayout,
  type SparsityConfig,
} from '../src/index.js';

const [Bn, H, T, D] = [2, 2, 32, 3];
const BLOCK = 4;

function f64Runtime(): Runtime {
  return new Runtime({ kernels: createReferenceKernels(), f64Check: true, memoryLimit: undefined });
}

function rand(shape: number[], seed: number): Tensor {
  const g = new Generator(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return fromArray(Array.from({ length: n }, () => 2 * g.uniform() - 1), shape, { requiresGrad: true });
}

/** The layout as a [1, H, T, T] additive mask: 0 inside a set block, MASKED outside. */
function layoutMask(l: BlockLayout, block: number): Tensor {
  const t = l.blocks * block;
  const m = new Float32Array(l.heads * t * t);
  for (let h = 0; h < l.heads; h++) for (let i = 0; i < t; i++) for (let j = 0; j < t; j++) m[(h * t + i) * t + j] = l.get(h, Math.floor(i / block), Math.floor(j / block)) ? 0 : MASKED;
  return fromArray(m, [1, l.heads, t, t], { dtype: 'f32' });
}

interface Run {
  y: number[];
  grads: number[][];
}

/** Output and d(sum(w * y))/d(q, k, v) of fn on fresh inputs. */
function run(fn: (q: Tensor, k: Tensor, v: Tensor) => Tensor): Run {
  return tidy(() => {
    const [q, k, v] = [rand([Bn, H, T, D], 1), rand([Bn, H, T, D], 2), rand([Bn, H, T, D], 3)];
    const y = fn(q, k, v);
    expect([q, k, v].map((x) => x.isDisposed)).toEqual([false, false, false]); // the kernel frees only its own temporaries
    const w = rand([Bn, H, T, D], 4);
    w.requiresGrad = false;
    sum(mul(y, w)).backward();
    return { y: y.toArray(), grads: [q, k, v].map((x) => x.grad!.toArray()) };
  });
}

function expectSame(a: Run, b: Run, tol: { rtol: number; atol: number }, what: string): void {
  expectClose(a.y, b.y, tol, `${what}: output`);
  a.grads.forEach((g, i) => expectClose(g, b.grads[i]!, tol, `${what}: gradient of ${'qkv'[i]}`));
}

const MODES: [string, SparsityConfig][] = [
  ['fixed bidirectional', new FixedSparsityConfig(H, { block: BLOCK, numLocalBlocks: 2 })],
  ['fixed unidirectional, per-head patterns', new FixedSparsityConfig(H, { block: BLOCK, numLocalBlocks: 4, attention: 'unidirectional', differentLayoutPerHead: true, numDifferentGlobalPatterns: 2 })],
  ['fixed horizontal global', new FixedSparsityConfig(H, { block: BLOCK, numLocalBlocks: 4, horizontalGlobalAttention: true })],
  ['variable with random blocks', new VariableSparsityConfig(H, { block: BLOCK, numRandomBlocks: 1, localWindowBlocks: [1, 2], globalBlockIndices: [0, 5], differentLayoutPerHead: true })],
  ['bigbird', new BigBirdSparsityConfig(H, { block: BLOCK, numRandomBlocks: 1, differentLayoutPerHead: true })],
  ['bslongformer', new BSLongformerSparsityConfig(H, { block: BLOCK, globalBlockIndices: [1], globalBlockEndIndices: [3] })],
  ['local sliding window', new LocalSlidingWindowSparsityConfig(H, { block: BLOCK, attention: 'bidirectional' })],
];

const F64 = { rtol: 1e-9, atol: 1e-11 };

describe('block-sparse attention equals dense attention with the layout as a mask (float64)', () => {
  for (const [name, cfg] of MODES) {
    for (const causal of [false, true]) {
      it(`${name}, ${causal ? 'causal' : 'bidirectional'}`, () => {
        withRuntime(f64Runtime(), () => {
          const layout = cfg.makeLayout(T);
          const plan = planLayout(layout, BLOCK, causal);
          const scale = 0.6;
          const sparse = run((q, k, v) => blockSparseAttention(q, k, v, plan, { scale }));
          const dense = run((q, k, v) => maskedAttention(q, k, v, { scale, causal, attnMask: layoutMask(layout, BLOCK) }));
          expectSame(sparse, dense, F64, name);
        });
      });
    }
  }

  it('causal rows whose blocks stop short of the diagonal (mask built per row)', () => {
    withRuntime(f64Runtime(), () => {
      const layout = new DenseSparsityConfig(H, { block: BLOCK }).makeLayout(T);
      for (let h = 0; h < H; h++) for (let r = 1; r < layout.blocks; r += 2) layout.set(h, r, r, 0);
      const plan = planLayout(layout, BLOCK, true);
      expect(plan.groups.some((g) => !g.diagonalLast)).toBe(true);
      const sparse = run((q, k, v) => blockSparseAttention(q, k, v, plan, { scale: 0.6 }));
      const dense = run((q, k, v) => maskedAttention(q, k, v, { scale: 0.6, causal: true, attnMask: layoutMask(layout, BLOCK) }));
      expectSame(sparse, dense, F64, 'rows without their diagonal block');
    });
  });

  it('with a key padding mask and an additive [T, T] attention mask', () => {
    withRuntime(f64Runtime(), () => {
      const layout = new FixedSparsityConfig(H, { block: BLOCK, numLocalBlocks: 2 }).makeLayout(T);
      const keep = Array.from({ length: Bn * T }, (_, i) => (i % T >= T - 5 && i >= T ? 0 : 1)); // sample 1's last 5 keys are padding
      const add = Array.from({ length: T * T }, (_, x) => 0.05 * ((Math.floor(x / T) * 7 + (x % T) * 3) % 11));
      for (const causal of [false, true]) {
        const kpm = fromArray(keep, [Bn, T]);
        const am = fromArray(add, [T, T]);
        const plan = planLayout(layout, BLOCK, causal);
        const sparse = run((q, k, v) => blockSparseAttention(q, k, v, plan, { scale: 0.5, keyPaddingMask: kpm, attnMask: am }));
        const dense = run((q, k, v) => maskedAttention(q, k, v, { scale: 0.5, causal, keyPaddingMask: kpm, attnMask: add2(am, layoutMask(layout, BLOCK)) }));
        expectSame(sparse, dense, F64, `masks, causal ${causal}`);
      }
    });
  });

  it('a layout covering everything equals plain dense attention (masked and fused causal)', () => {
    withRuntime(f64Runtime(), () => {
      const layout = new DenseSparsityConfig(H, { block: BLOCK }).makeLayout(T);
      const scale = 1 / Math.sqrt(D);
      expectSame(run((q, k, v) => blockSparseAttention(q, k, v, planLayout(layout, BLOCK, false), { scale })), run((q, k, v) => maskedAttention(q, k, v, { scale, causal: false })), F64, 'dense bidirectional');
      expectSame(run((q, k, v) => blockSparseAttention(q, k, v, planLayout(layout, BLOCK, true), { scale })), run((q, k, v) => causalAttention(q, k, v, { scale })), F64, 'dense causal');
    });
  });
});

/** a + b for mask tensors of shapes [T, T] and [1, H, T, T]. */
function add2(a: Tensor, b: Tensor): Tensor {
  const av = a.toArray();
  const bv = b.toArray();
  return fromArray(bv.map((x, i) => x + av[i % (T * T)]!), b.shape);
}

describe('block-sparse attention on the native kernels (f32)', () => {
  it('matches dense attention with the layout mask within f32 tolerance, outputs and gradients', () => {
    const layout = new BigBirdSparsityConfig(H, { block: BLOCK, numRandomBlocks: 1 }).makeLayout(T);
    for (const causal of [false, true]) {
      const plan = planLayout(layout, BLOCK, causal);
      const sparse = run((q, k, v) => blockSparseAttention(q, k, v, plan, { scale: 0.5 }));
      const dense = run((q, k, v) => maskedAttention(q, k, v, { scale: 0.5, causal, attnMask: layoutMask(layout, BLOCK) }));
      expectSame(sparse, dense, { rtol: 1e-4, atol: 1e-5 }, `native, causal ${causal}`);
    }
  });
});

describe('bad input', () => {
  const layout = new FixedSparsityConfig(H, { block: BLOCK }).makeLayout(T);
  it('names a row the layout leaves empty', () => {
    const l = new LocalSlidingWindowSparsityConfig(1, { block: BLOCK }).makeLayout(T);
    l.set(0, 3, 2, 0);
    l.set(0, 3, 3, 0);
    expect(() => planLayout(l, BLOCK, false)).toThrow(/block row 3 of head 0 has no block/);
    // A row whose only blocks lie right of the diagonal is empty for causal attention.
    const u = new DenseSparsityConfig(1, { block: BLOCK }).makeLayout(3 * BLOCK);
    u.set(0, 1, 0, 0);
    u.set(0, 1, 1, 0);
    expect(() => planLayout(u, BLOCK, true)).toThrow(/block row 1 of head 0 has no block at or left of the diagonal/);
  });

  it('names a block size the kernels do not take', () => {
    const l = new DenseSparsityConfig(1, { block: 12 }).makeLayout(24);
    expect(() => planLayout(l, 12, false)).toThrow(/block size 12 is not supported by the block-sparse kernels; use one of 1, 2, 4, 8, 16, 32, 64, 128/);
  });

  it('names a sequence length the layout does not fit and masks of the wrong shape', () => {
    const plan = planLayout(layout, BLOCK, false);
    const x = rand([1, H, T - 2, D], 1);
    expect(() => blockSparseAttention(x, x, x, plan, { scale: 1 })).toThrow(/sequence length 30 is not a multiple of the block size 4/);
    const y = rand([1, H, T + BLOCK, D], 1);
    expect(() => blockSparseAttention(y, y, y, plan, { scale: 1 })).toThrow(/q has 2 heads and 9 blocks of 4, the layout 2 heads and 8 blocks/);
    const z = rand([1, H, T, D], 1);
    expect(() => blockSparseAttention(z, z, z, plan, { scale: 1, keyPaddingMask: fromArray(new Array(T).fill(1), [T]) })).toThrow(/keyPaddingMask \[32\] must be \[B, T\] = \[1, 32\]/);
    expect(() => blockSparseAttention(z, z, z, plan, { scale: 1, attnMask: fromArray(new Array(2 * T * T).fill(0), [2, T, T]) })).toThrow(/attnMask \[2, 32, 32\] is not supported/);
  });
});
