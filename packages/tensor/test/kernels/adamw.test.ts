// Fused AdamW against the reference (torch.optim.AdamW semantics) over every option: gradient dtype,
// decoupled or L2 decay, bias correction on or off, gradient scale, and the bf16/f16 copy out.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { createReferenceKernels } from '../../src/reference/index.js';
import type { HostAdamWArgs as AdamWArgs, FloatDType } from '../../src/kernels/table.js';
import { FLOAT_DTYPES, clone, cpu, expectCloseArrays, forEachIsa, randomArray, tol } from './helpers.js';

const ref = createReferenceKernels();

function state(n: number, gradDtype: FloatDType, seed: number) {
  return {
    param: randomArray('f32', n, seed, -1, 1) as Float32Array,
    grad: randomArray(gradDtype, n, seed + 1, -3, 3),
    expAvg: randomArray('f32', n, seed + 2, -0.1, 0.1) as Float32Array,
    expAvgSq: randomArray('f32', n, seed + 3, 0, 0.01) as Float32Array,
  };
}

describe('adamw', () => {
  it('matches the reference for every option combination', () => {
    let seed = 1;
    for (const gradDtype of FLOAT_DTYPES) {
      for (const n of [1, 31, 40009]) {
        for (const decoupled of [true, false]) {
          for (const biasCorrection of [true, false]) {
            for (const out16Dtype of [undefined, 'bf16', 'f16'] as const) {
              // The large size (several threads, many tiles) once per gradient dtype and out16 choice.
              if (n > 1000 && !(decoupled && biasCorrection)) continue;
              const s = state(n, gradDtype, seed++);
              const base: AdamWArgs = {
                ...s, gradDtype, n, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 7,
                biasCorrection, decoupled, gradScale: 0.5,
                ...(out16Dtype ? { out16: new Uint16Array(n), out16Dtype } : {}),
              };
              const want = { ...base, param: clone(s.param), expAvg: clone(s.expAvg), expAvgSq: clone(s.expAvgSq), out16: base.out16 && clone(base.out16) };
              ref.adamw(want);
              forEachIsa(() => {
                const got = { ...base, param: clone(s.param), expAvg: clone(s.expAvg), expAvgSq: clone(s.expAvgSq), out16: base.out16 && clone(base.out16) };
                cpu.adamw(got);
                const name = `adamw grad=${gradDtype} n=${n} decoupled=${decoupled} bc=${biasCorrection} out16=${out16Dtype}`;
                expectClose(got.param, want.param, { rtol: 1e-6, atol: 1e-7 }, `${name} param`);
                expectClose(got.expAvg, want.expAvg, tol('f32'), `${name} expAvg`);
                expectClose(got.expAvgSq, want.expAvgSq, { rtol: 1e-5, atol: 1e-9 }, `${name} expAvgSq`);
                if (out16Dtype) expectCloseArrays(`${name} out16`, out16Dtype, got.out16!, want.out16!, tol(out16Dtype));
              });
            }
          }
        }
      }
    }
  });

  it('streamProbe (the bench AdamW-shaped bandwidth probe) adds g to p, m and v, and checks lengths', () => {
    const n = 40009;
    const [p, g, m, v] = [1, 2, 3, 4].map((seed) => randomArray('f32', n, seed) as Float32Array) as [Float32Array, Float32Array, Float32Array, Float32Array];
    const want = [p, m, v].map((x) => Float32Array.from(x, (xi, i) => xi + g[i]!));
    forEachIsa((isa) => {
      const got = [clone(p), clone(m), clone(v)] as [Float32Array, Float32Array, Float32Array];
      cpu.streamProbe(got[0], g, got[1], got[2], n);
      got.forEach((x, i) => expectClose(x, want[i]!, { rtol: 0, atol: 0 }, `streamProbe ${isa} ${'pmv'[i]}`));
    });
    expect(() => cpu.streamProbe(p, g, m, v.subarray(1), n)).toThrow(/v has 40008 elements but n=40009 needs 40009/);
  });
});
