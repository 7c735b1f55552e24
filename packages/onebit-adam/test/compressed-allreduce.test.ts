// The compressed all-reduce on 2, 3 and 4 real processes equals its float64 reference for odd sizes,
// over several calls (so that both error buffers carry over): every rank's result, the worker and
// server signs (exactly), the scales, and both error buffers. Also bf16 and f16 inputs on 2 ranks.
import { describe, expect, it } from 'vitest';

import { describeWorld, expectClose, lastJson, netnsSupport, withNetnsWorld, withWorld, type WorldResult } from '@ds-internal/test-kit';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '@ds/tensor';

import { paddedSize, referenceCompressedAllReduce, referenceStates } from '../src/index.js';
import { inputFor } from './workers/inputs.js';

const SIZES = [1, 13, 37, 101, 1001];
const ITERS = 3;

interface Step {
  output: number[];
  workerScales: number[];
  serverScales: number[];
  workerBits: number[];
  serverBits: number[];
  worker: number[];
  server: number[];
}

function unpack(bytes: readonly number[]): number[] {
  return bytes.flatMap((b) => Array.from({ length: 8 }, (_, k) => (b >> (7 - k)) & 1));
}

async function runWorld(world: number, dtype: 'f32' | 'bf16' | 'f16', rate?: string) {
  const script = new URL('./workers/allreduce.ts', import.meta.url);
  const env = { DS_TEST_SIZES: JSON.stringify(SIZES), DS_TEST_ITERS: String(ITERS), DS_TEST_DTYPE: dtype };
  const w: WorldResult = rate ? await withNetnsWorld(world, script, { rate, env, timeoutMs: 60_000 }) : await withWorld(world, script, { env, timeoutMs: 60_000 });
  expect(w.timedOut, describeWorld(w)).toBe(false);
  for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
  return w.ranks.map((r) => lastJson<{ out: { n: number; steps: Step[] }[] }>(r.stdout).out);
}

function check(world: number, dtype: 'f32' | 'bf16' | 'f16', got: { n: number; steps: Step[] }[][]): void {
  const round = dtype === 'f32' ? Math.fround : dtype === 'bf16' ? (v: number) => bf16ToF32(f32ToBf16(v)) : (v: number) => f16ToF32(f32ToF16(v));
  // The output is rounded once to the input dtype; everything else is f32.
  const outTol = dtype === 'f32' ? 2e-5 : dtype === 'bf16' ? 8e-3 : 1e-3;
  SIZES.forEach((n, si) => {
    const states = referenceStates(n, world);
    const padded = paddedSize(n, world);
    for (let t = 0; t < ITERS; t++) {
      const inputs = Array.from({ length: world }, (_, r) => inputFor(r, t, n).map(round));
      const ref = referenceCompressedAllReduce(inputs, states);
      const scale = Math.max(...ref.workerScales, ...ref.serverScales);
      const where = `world ${world} ${dtype} n=${n} call ${t}`;
      for (let r = 0; r < world; r++) {
        const step = got[r]![si]!.steps[t]!;
        expect(got[r]![si]!.n).toBe(n);
        expectClose(step.output, ref.output, { rtol: outTol, atol: 1e-6 * scale }, `${where} rank ${r} output`);
        expectClose(step.workerScales, ref.workerScales, { rtol: 1e-5 }, `${where} worker scales`);
        expectClose(step.serverScales, ref.serverScales, { rtol: 1e-5 }, `${where} server scales`);
        expect(unpack(step.workerBits), `${where} rank ${r} worker signs`).toEqual(Array.from(ref.workerSigns[r]!));
        expect(unpack(step.serverBits), `${where} rank ${r} server signs`).toEqual(Array.from(ref.serverSigns[r]!));
        expect(step.worker.length).toBe(padded);
        expectClose(step.worker, states[r]!.worker, { rtol: 1e-5, atol: 1e-5 * scale }, `${where} rank ${r} worker error`);
        expectClose(step.server, states[r]!.server, { rtol: 1e-5, atol: 1e-5 * scale }, `${where} rank ${r} server error`);
      }
    }
  });
}

describe.each([2, 3, 4])('compressed all-reduce on %i ranks', (world) => {
  it('equals the float64 reference for odd sizes, over three calls', async () => {
    check(world, 'f32', await runWorld(world, 'f32'));
  }, 90_000);
});

describe.each(['bf16', 'f16'] as const)('compressed all-reduce of %s buffers', (dtype) => {
  it('widens, reduces in f32 and rounds once (2 ranks)', async () => {
    check(2, dtype, await runWorld(2, dtype));
  }, 90_000);
});

const noNetns = netnsSupport();
if (noNetns) console.log(`slow-network compressed all-reduce skipped: ${noNetns}`);

describe.skipIf(noNetns !== null)('compressed all-reduce between network namespaces (TCP, 100 Mbit/s links)', () => {
  it('equals the float64 reference on 3 ranks', async () => {
    check(3, 'f32', await runWorld(3, 'f32', '100mbit'));
  }, 90_000);
});
