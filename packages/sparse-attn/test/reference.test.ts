// The composed block-sparse attention (gathers and batched GEMMs on @ds/tensor's kernels) against
// the plain specification in src/reference/block-sparse.ts, which writes SDD, the block-sparse
// softmax, DSD and DDS out as loops over DeepSpeed's [B, nnz, block, block] storage: outputs and
// gradients on random inputs, in float64.
import { describe, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import { createReferenceKernels, fromArray, Generator, Runtime, tidy, withRuntime } from '@ds/tensor';

import { BigBirdSparsityConfig, blockSparseAttention, FixedSparsityConfig, planLayout, VariableSparsityConfig, type SparsityConfig } from '../src/index.js';
import { referenceAttention } from '../src/reference/block-sparse.js';

const S = { B: 2, H: 2, T: 24, D: 5, block: 4 };

function randoms(n: number, seed: number): number[] {
  const g = new Generator(seed);
  return Array.from({ length: n }, () => 2 * g.uniform() - 1);
}

const CASES: [string, SparsityConfig, boolean, boolean][] = [
  ['fixed, per-head patterns, causal, key padding and attention mask', new FixedSparsityConfig(S.H, { block: S.block, numLocalBlocks: 2, differentLayoutPerHead: true, numDifferentGlobalPatterns: 2 }), true, true],
  ['bigbird, bidirectional', new BigBirdSparsityConfig(S.H, { block: S.block, numRandomBlocks: 1, differentLayoutPerHead: true }), false, false],
  ['variable, bidirectional, masks', new VariableSparsityConfig(S.H, { block: S.block, numRandomBlocks: 1, localWindowBlocks: [2, 1], globalBlockIndices: [1] }), false, true],
];

describe('composed block-sparse attention equals the SDD / softmax / DSD / DDS specification (float64)', () => {
  for (const [name, cfg, causal, masks] of CASES) {
    it(name, () => {
      withRuntime(new Runtime({ kernels: createReferenceKernels(), f64Check: true, memoryLimit: undefined }), () => {
        const n = S.B * S.H * S.T * S.D;
        const [qa, ka, va, dya] = [1, 2, 3, 4].map((seed) => randoms(n, seed)) as [number[], number[], number[], number[]];
        const kpm = masks ? Array.from({ length: S.B * S.T }, (_, i) => (i >= S.T && i % S.T >= S.T - 3 ? 0 : 1)) : undefined;
        const am = masks ? randoms(S.T * S.T, 5).map((x) => 0.5 * x) : undefined;
        const layout = cfg.makeLayout(S.T);
        const scale = 0.45;
        const spec = referenceAttention(qa, ka, va, dya, layout, S, { scale, causal, keyPaddingMask: kpm, attnMask: am });
        tidy(() => {
          const shape = [S.B, S.H, S.T, S.D];
          const [q, k, v] = [qa, ka, va].map((a) => fromArray(a, shape, { requiresGrad: true }));
          const y = blockSparseAttention(q!, k!, v!, planLayout(layout, S.block, causal), {
            scale,
            keyPaddingMask: kpm ? fromArray(kpm, [S.B, S.T]) : undefined,
            attnMask: am ? fromArray(am, [S.T, S.T]) : undefined,
          });
          y.backward(fromArray(dya, shape));
          const tol = { rtol: 1e-9, atol: 1e-11 };
          expectClose(y.toArray(), spec.y, tol, `${name}: output`);
          expectClose(q!.grad!.toArray(), spec.dq, tol, `${name}: dq`);
          expectClose(k!.grad!.toArray(), spec.dk, tol, `${name}: dk`);
          expectClose(v!.grad!.toArray(), spec.dv, tol, `${name}: dv`);
        });
      });
    });
  }
});
