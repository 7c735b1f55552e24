// The native kernels (AVX2 where the CPU has it, and the scalar loops on their own) against their
// TypeScript twins (src/reference/kernels.ts) on random inputs with zeros, -0 and NaN: identical bits,
// identical error values, sums of squares to double rounding; the update loops to an ulp.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { nativeOnebitKernels, paddedSize, referenceOnebitKernels } from '../src/index.js';

function randomVector(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = i % 13 === 3 ? 0 : i % 29 === 7 ? -0 : (next() - 0.5) * 4;
  if (n > 40) x[40] = Number.NaN;
  return x;
}

describe.each(['auto', 'scalar'] as const)('native sign kernels (%s) against the TypeScript twins', (isa) => {
  const native = nativeOnebitKernels(isa);

  it.each([8, 64, 1000, 4104])('n = %i: error feedback, packing and unpacking agree exactly', (n) => {
    const x = randomVector(n, n);
    const err = randomVector(n, n + 1).map((v) => (Number.isNaN(v) ? 0.25 : v * 0.1));
    const [xa, xb] = [x.slice(), x.slice()];
    const ssa = native.addErrorSumSquares(xa, err);
    const ssb = referenceOnebitKernels.addErrorSumSquares(xb, err);
    expect(Array.from(xa)).toEqual(Array.from(xb));
    if (Number.isNaN(ssb)) expect(ssa).toBeNaN();
    else expectClose([ssa], [ssb], { rtol: 1e-12 }, 'sum of squares');
    const finite = xa.map((v) => (Number.isNaN(v) ? 0.5 : v));
    const bitsA = new Uint8Array(n / 8), bitsB = new Uint8Array(n / 8);
    const ea = new Float32Array(n), eb = new Float32Array(n);
    native.compressSigns(xa, 0.75, bitsA, ea);
    referenceOnebitKernels.compressSigns(xb, 0.75, bitsB, eb);
    expect(Array.from(bitsA)).toEqual(Array.from(bitsB));
    expect(Array.from(ea)).toEqual(Array.from(eb));
    // NaN is "not negative": bit set.
    if (n > 40) expect((bitsA[5]! >> 7) & 1).toBe(1);
    const oa = finite.slice(), ob = finite.slice();
    native.unpackSigns(bitsA, 1.5, oa, true);
    referenceOnebitKernels.unpackSigns(bitsB, 1.5, ob, true);
    expect(Array.from(oa)).toEqual(Array.from(ob));
    native.unpackSigns(bitsA, 2, oa, false);
    referenceOnebitKernels.unpackSigns(bitsB, 2, ob, false);
    expect(Array.from(oa)).toEqual(Array.from(ob));
  });

  it('packs in numpy packbits order: element 0 in the top bit, 1 for x >= 0 (also -0)', () => {
    const x = Float32Array.from([1, -1, -1, -1, -1, -1, -1, -0, -2, 3, -2, -2, -2, -2, -2, 0]);
    const bits = new Uint8Array(2);
    native.compressSigns(x, 1, bits, new Float32Array(16));
    expect(Array.from(bits)).toEqual([0b10000001, 0b01000001]);
  });

  it.each([7, 1000, 4099])('n = %i: momentum and frozen-variance updates agree to an ulp (FMA contraction)', (n) => {
    const m = randomVector(n, 3).map((v) => (Number.isNaN(v) ? 0.1 : v));
    const g = randomVector(n, 4).map((v) => (Number.isNaN(v) ? -0.2 : v));
    const v = randomVector(n, 5).map((x) => (Number.isNaN(x) ? 0.3 : x * x));
    const p = randomVector(n, 6).map((x) => (Number.isNaN(x) ? 1 : x));
    const [ma, mb] = [m.slice(), m.slice()];
    native.momentumUpdate(ma, g, 0.9, 0.5);
    referenceOnebitKernels.momentumUpdate(mb, g, 0.9, 0.5);
    expectClose(ma, mb, { rtol: 1e-6, atol: 1e-7 }, 'momentum');
    const [pa, pb] = [p.slice(), p.slice()];
    native.frozenAdamUpdate(pa, ma, v, 1e-2, 1e-8, 0.1);
    referenceOnebitKernels.frozenAdamUpdate(pb, ma, v, 1e-2, 1e-8, 0.1);
    expectClose(pa, pb, { rtol: 1e-6, atol: 1e-7 }, 'weights');
    // And against float64 arithmetic.
    const want = Array.from(p, (x, i) => x - 1e-2 * (ma[i]! / (Math.sqrt(v[i]!) + 1e-8) + 0.1 * x));
    expectClose(pa, want, { rtol: 1e-5, atol: 1e-6 }, 'weights (f64)');
  });

  it('rejects a length that is not a multiple of 8 with the fix named', () => {
    expect(() => native.compressSigns(new Float32Array(9), 1, new Uint8Array(2), new Float32Array(9))).toThrow(/multiple of 8.*paddedSize/);
  });
});

describe('padding', () => {
  it("is DeepSpeed's world x lcm(8, world)", () => {
    expect(paddedSize(1, 4)).toBe(32);
    expect(paddedSize(33, 4)).toBe(64);
    expect(paddedSize(5, 8)).toBe(64);
    expect(paddedSize(1, 16)).toBe(256);
    expect(paddedSize(7, 3)).toBe(72);
    expect(paddedSize(73, 3)).toBe(144);
    expect(paddedSize(16, 2)).toBe(16);
    expect(paddedSize(17, 2)).toBe(32);
  });
});
