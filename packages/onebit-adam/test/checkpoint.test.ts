// Checkpoints in the compressed phase: every rank writes its own error-feedback buffers, and a run
// resumed from a checkpoint taken after freeze_step repeats the uninterrupted run's losses exactly
// (DeepSpeed resets the errors on load, so its resumed run drifts; see src/state.ts). Loading on a
// different world size resets them, as DeepSpeed does, and trains on.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { describeWorld, expectClose, lastJson, withWorld } from '@ds-internal/test-kit';
import { readSafetensors, initialize } from '@ds/core';
import { GPT } from '@ds/tensor';

import { onebitAdam } from '../src/index.js';
import { noisyBatch } from './workers/data.js';

const dir = mkdtempSync(join(tmpdir(), 'onebit-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GPT_CFG = { vocabSize: 32, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, seed: 3 };
const CONFIG = { train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 1, optimizer: { type: 'OneBitAdam', params: { lr: 3e-3, betas: [0.9, 0.99], freeze_step: 4 } } };

describe('1-bit Adam checkpoints', () => {
  it('resumed in the compressed phase on 2 ranks, repeats the uninterrupted losses; on 1 rank, resets the errors', async () => {
    const w = await withWorld(2, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_CONFIGS: JSON.stringify([CONFIG]), DS_TEST_STEPS: '12', DS_TEST_CKPT: `${dir}:8`, DS_TEST_GPT: JSON.stringify(GPT_CFG) },
      timeoutMs: 60_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const run = lastJson<{ runs: { losses: number[]; resumed: number[] }[] }>(r.stdout).runs[0]!;
      expect(run.resumed).toEqual(run.losses.slice(8));
    }
    // One file per rank, each with that rank's (different, non-zero) errors.
    const files = readdirSync(join(dir, 'k')).filter((f) => f.includes('optim_states')).sort();
    expect(files).toHaveLength(2);
    const errors = files.map((f) => readSafetensors(join(dir, 'k', f)).tensors.get('onebit.slot0.worker_error')!.data as Float32Array);
    expect(errors[0]!.some((v) => v !== 0)).toBe(true);
    expect(Array.from(errors[0]!)).not.toEqual(Array.from(errors[1]!));

    const logs: string[] = [];
    const { engine } = await initialize({ model: new GPT(GPT_CFG), config: CONFIG, plugins: [onebitAdam()], dist: null, log: (m) => logs.push(m) });
    await engine.loadCheckpoint(dir, { tag: 'k' });
    expect(logs.join('\n')).toMatch(/written by 2 rank\(s\), this run has 1: error-feedback buffers restart from zero/);
    const { ids, targets } = noisyBatch(8, 0, 2, 8, 32);
    const loss = engine.forward<{ loss: import('@ds/tensor').Tensor }>(ids, targets).loss!;
    expect(Number.isFinite(await engine.backward(loss))).toBe(true);
    await engine.step();
    engine.destroy();
  }, 90_000);

  it('0/1 Adam resumed on a synchronisation step of its local-step phase repeats the uninterrupted losses to rounding', async () => {
    // Variance updates on steps 1, 2, 4; local steps from step 5, synchronising every step until 4
    // local steps, then every 2nd (steps 10, 12, 14).
    const config = { ...CONFIG, optimizer: { type: 'ZeroOneAdam', params: { lr: 1e-3, betas: [0.9, 0.9], var_freeze_step: 4, var_update_scaler: 2, local_step_scaler: 4, local_step_clipper: 2 } } };
    const sub = join(dir, 'zo');
    const w = await withWorld(2, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_CONFIGS: JSON.stringify([config]), DS_TEST_STEPS: '14', DS_TEST_CKPT: `${sub}:10`, DS_TEST_GPT: JSON.stringify(GPT_CFG) },
      timeoutMs: 60_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const run = lastJson<{ runs: { losses: number[]; resumed: number[] }[] }>(r.stdout).runs[0]!;
      // Undoing the local steps (p - u) is exact only to rounding, so after a synchronisation the
      // ranks' weights agree to an ulp or so, and stage 0 restores rank 0's on every rank. The
      // ulp-level difference then grows about tenfold a step in this 1-layer model (measured: step 10
      // equal, step 11 equal or 7e-8 relative on rank 1 depending on how the bias gradients are summed,
      // 1e-6 relative at step 12 after the synchronisation, 1.2e-5 at step 13). Step 10 must match
      // exactly and step 11 to 1e-6; losing state shows there and grows far past 1e-4 (checked:
      // loading without the optimizer states moves step 11 by 9e-4 relative and step 13 by 3e-3).
      expectClose(run.resumed.slice(0, 1), run.losses.slice(10, 11), { rtol: 0, atol: 0 }, `rank ${r.rank} resumed loss of step 10`);
      expectClose(run.resumed.slice(1, 2), run.losses.slice(11, 12), { rtol: 1e-6, atol: 0 }, `rank ${r.rank} resumed loss of step 11`);
      expectClose(run.resumed, run.losses.slice(10), { rtol: 1e-4 }, `rank ${r.rank} resumed losses`);
      expect(Math.max(...run.losses)).toBeLessThan(4);
      expect(run.resumed).not.toEqual(run.losses.slice(0, 4));
    }
  }, 90_000);

  it('1-bit LAMB resumed in its compressed phase repeats the uninterrupted losses (fused errors, scaling and trust-ratio state restored)', async () => {
    const config = { ...CONFIG, optimizer: { type: 'OneBitLamb', params: { lr: 3e-3, betas: [0.9, 0.99], freeze_step: 4, weight_decay: 0.01 } } };
    const sub = join(dir, 'lamb');
    const w = await withWorld(2, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_CONFIGS: JSON.stringify([config]), DS_TEST_STEPS: '12', DS_TEST_CKPT: `${sub}:8`, DS_TEST_GPT: JSON.stringify(GPT_CFG) },
      timeoutMs: 60_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const run = lastJson<{ runs: { losses: number[]; resumed: number[] }[] }>(r.stdout).runs[0]!;
      expect(run.resumed).toEqual(run.losses.slice(8));
    }
  }, 90_000);

  it('0/1 Adam refuses a checkpoint between synchronisations, saying when to save', async () => {
    const config = { ...CONFIG, optimizer: { type: 'ZeroOneAdam', params: { var_freeze_step: 1, local_step_scaler: 1, local_step_clipper: 4 } } };
    const sub = join(dir, 'zo-bad');
    const w = await withWorld(2, new URL('./workers/train.ts', import.meta.url), {
      env: { DS_TEST_CONFIGS: JSON.stringify([config]), DS_TEST_STEPS: '8', DS_TEST_CKPT: `${sub}:5`, DS_TEST_GPT: JSON.stringify(GPT_CFG) },
      timeoutMs: 60_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) {
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/between local-step synchronisations.*multiple of the local step interval/);
    }
  }, 90_000);
});
