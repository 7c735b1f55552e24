// With this plugin registered, ZeRO stages 1, 2 and 3 keep their fp32 masters and optimizer moments
// in the `cpu` or `nvme` tier (and stage 3 its 16-bit parameter shard, offload_param) and end 20
// steps with exactly the weights and losses of the same run without offload: 2 ranks, several
// sub-groups per rank, with and without the read/write pipeline, the nvme tier on io_uring, on the
// pread/pwrite pool and on the reference engine; a tier that loses what it holds is the control that
// shows the check can fail. @ds/zero is
// a devDependency of these tests only (the package itself imports core and tensor).
import { readdirSync, rmSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { tinyConfig, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { GPT } from '@ds/tensor';
import { zero } from '@ds/zero';

import { offloadNvme } from '../src/index.js';
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { scratchDir } from './helpers.js';

const dir = scratchDir('zero');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface RunOut {
  losses: number[];
  swapFiles: number;
  hostOffloadBytes: number;
  /** gradientShard: the state manager's own count of the gradient buffer it keeps on the device. */
  device: { optimizerStates: number; parameters: number; gradients: number; gradientShard: number };
  masters?: Record<string, number[]>;
}

type Io = 'native' | 'threads' | 'reference' | 'lossy';
type Section = Record<string, unknown>;
interface Spec {
  offload?: Section;
  param?: Section;
  io: Io;
  extra?: object;
}

describe('ZeRO with offload_optimizer (and offload_param at stage 3) on 2 ranks', () => {
  it('cpu and nvme tiers give exactly the weights and losses of no offload for 20 steps at stages 1, 2 and 3', async () => {
    const zeroSection = (stage: number, spec: Spec) => ({
      stage,
      reduce_bucket_size: 700,
      sub_group_size: 400,
      ...(stage === 3 ? { stage3_param_persistence_threshold: 20 } : {}),
      ...(spec.offload ? { offload_optimizer: spec.offload } : {}),
      ...(spec.param ? { offload_param: spec.param } : {}),
    });
    const nvme = { device: 'nvme', nvme_path: dir };
    // Every sub-group's read overlapped with the step before it and its write with the step after.
    const piped = { ...nvme, pipeline_read: true, pipeline_write: true, buffer_count: 9 };
    const smallAio = { aio: { block_size: 4096, queue_depth: 4, intra_op_parallelism: 2 } };
    const decaying = { scheduler: { type: 'WarmupDecayLR', params: { warmup_min_lr: 0, warmup_max_lr: 1e-2, warmup_num_steps: 5, total_num_steps: 20 } } };
    // Per stage: the baseline without offload, then the offloaded runs compared with it.
    const plan: { stage: number; runs: Spec[] }[] = [
      {
        stage: 2,
        runs: [
          { io: 'native' },
          { offload: { device: 'cpu' }, io: 'native' },
          { offload: { device: 'cpu', pipeline_read: true, buffer_count: 6 }, io: 'native' },
          { offload: nvme, io: 'native', extra: smallAio },
          { offload: piped, io: 'native' },
          { offload: piped, io: 'threads' },
          { offload: nvme, io: 'reference' },
          { offload: nvme, io: 'lossy' },
        ],
      },
      { stage: 1, runs: [{ io: 'native' }, { offload: { device: 'cpu' }, io: 'native' }, { offload: piped, io: 'native' }] },
      {
        stage: 3,
        runs: [
          { io: 'native' },
          { offload: { device: 'cpu' }, io: 'native' },
          { offload: piped, io: 'native' },
          { offload: { device: 'cpu' }, param: { device: 'cpu' }, io: 'native' },
          // Every block on nvme; then the first units in host memory (max_in_cpu) and the rest on nvme.
          { offload: piped, param: { ...nvme, max_in_cpu: 0, buffer_count: 2 }, io: 'native' },
          { offload: nvme, param: { ...nvme, max_in_cpu: 3000 }, io: 'threads' },
          // max_in_cpu 0, yet the units whose block passes buffer_size (c_attn's and the MLP's, over 400
          // elements per rank) are not swappable and stay in host memory; the smaller ones go to nvme.
          { offload: nvme, param: { ...nvme, max_in_cpu: 0, buffer_size: 300 }, io: 'native' },
          { offload: nvme, param: { ...nvme, max_in_cpu: 0 }, io: 'lossy' },
        ],
      },
      // A learning rate that changes every step: stage 3 steps some sub-groups under the next forward
      // (after the scheduler moved on), with the learning rate of the step they belong to.
      {
        stage: 3,
        runs: [
          { io: 'native', extra: decaying },
          { offload: piped, param: { ...nvme, max_in_cpu: 0 }, io: 'native', extra: decaying },
          { offload: nvme, io: 'native', extra: decaying },
        ],
      },
    ];
    const runs = plan.flatMap((p) => p.runs.map((r) => ({ config: { ...tinyConfig(1, zeroSection(p.stage, r)), ...r.extra }, io: r.io })));
    const w = await withWorld(2, new URL('./workers/zero-offload.ts', import.meta.url), {
      env: { DS_TEST_RUNS: JSON.stringify(runs), DS_TEST_STEPS: '20' },
      timeoutMs: 280_000,
    });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    const ranks = w.ranks.map((r) => lastJson<{ runs: RunOut[] }>(r.stdout).runs);
    let at = 0;
    for (const p of plan) {
      const base = at;
      expect(Object.keys(ranks[0]![base]!.masters!).length).toBeGreaterThan(0);
      expect(ranks[0]![base]!.losses).toHaveLength(20);
      p.runs.forEach((spec, k) => {
        const i = base + k;
        const what = `stage ${p.stage} offload_optimizer ${JSON.stringify(spec.offload ?? 'none')} offload_param ${JSON.stringify(spec.param ?? 'none')} on ${spec.io}`;
        const devices = [spec.offload?.device, spec.param?.device];
        const nvmeFiles = devices.filter((d) => d === 'nvme').length;
        for (const r of [0, 1]) {
          const run = ranks[r]![i]!;
          const ref = ranks[r]![base]!;
          // Stages 2 and 3 keep the gradient shard in the offload tier (cpu: its host memory; nvme:
          // the swap file): the device's gradient bytes drop by exactly the shard's size, all of them
          // (the shard is the only gradient buffer kept between steps). Stage 1 keeps its full local
          // gradient buffer, every rank's part of it.
          expect(ref.device.gradients, what).toBeGreaterThan(0);
          expect(ref.device.gradients, what).toBe(ref.device.gradientShard);
          const gradShard = spec.offload && p.stage > 1 ? ref.device.gradients : 0;
          expect(run.device.gradientShard, what).toBe(ref.device.gradientShard - gradShard);
          expect(run.device.gradients, what).toBe(ref.device.gradients - gradShard);
          // The tiers were used: host bytes for cpu (and for nvme units kept by max_in_cpu), one swap file per rank and kind for nvme.
          const hostHeld = devices.includes('cpu') || (spec.param?.max_in_cpu as number) > 0 || spec.param?.buffer_size !== undefined;
          const hostGrads = spec.offload?.device === 'cpu' ? gradShard : 0;
          if (hostHeld) expect(run.hostOffloadBytes, what).toBeGreaterThan(hostGrads);
          else expect(run.hostOffloadBytes, what).toBe(0);
          expect(run.swapFiles, what).toBe(2 * nvmeFiles);
          // Offloaded masters and moments leave nothing in 'optimizer_states' on the device; offloaded
          // parameters leave only the persistent unit there.
          if (spec.offload) expect(run.device.optimizerStates, what).toBe(0);
          else expect(run.device.optimizerStates, what).toBeGreaterThan(0);
          if (spec.param) expect(run.device.parameters, what).toBeLessThan(ranks[r]![base]!.device.parameters / 4);
        }
        if (k === 0) return;
        const same = Object.entries(ranks[0]![base]!.masters!).every(([name, values]) => JSON.stringify(ranks[0]![i]!.masters![name]) === JSON.stringify(values));
        if (spec.io === 'lossy') {
          // The control: a tier that loses what it holds changes the weights, so the equalities above can fail.
          expect(same, what).toBe(false);
          return;
        }
        for (const r of [0, 1]) expect(ranks[r]![i]!.losses, `${what} rank ${r} losses`).toEqual(ranks[r]![base]!.losses);
        for (const [name, values] of Object.entries(ranks[0]![base]!.masters!)) expect(ranks[0]![i]!.masters![name], `${what}: ${name}`).toEqual(values);
      });
      at += p.runs.length;
    }
    // Swap files are scratch: none is left once the engines are destroyed and the ranks exit.
    expect(readdirSync(dir)).toEqual([]);
  }, 300_000);
});

describe('offload sections ZeRO refuses before any work', () => {
  const start = (zeroSection: Record<string, unknown>, extra: object = {}) =>
    initialize({ model: new GPT(TINY_GPT), config: { ...tinyConfig(1, zeroSection), ...extra }, plugins: [zero(), offloadNvme()], log: () => {} });

  it('buffer_count too small for the pipeline, parameter offload without optimizer offload or with fp32 parameters', async () => {
    // Adam's sub-group takes 3 buffers (master, exp_avg, exp_avg_sq); reading ahead and writing behind need 3 sets.
    await expect(start({ stage: 2, offload_optimizer: { device: 'cpu', pipeline_read: true, pipeline_write: true } })).rejects.toThrow(
      /offload_optimizer\.buffer_count 4 is too small: a sub-group needs 3 buffers \(fp32 master, exp_avg, exp_avg_sq\) and 3 sub-groups in flight \(pipeline_read and pipeline_write\) need 9; set buffer_count to 9 or more/,
    );
    await expect(start({ stage: 2, offload_optimizer: { device: 'cpu', buffer_count: 2 } })).rejects.toThrow(/buffer_count 2 is too small.*one sub-group in flight need 3/);
    await expect(start({ stage: 3, offload_param: { device: 'cpu' } })).rejects.toThrow(/offload_param needs offload_optimizer too/);
    await expect(start({ stage: 3, offload_param: { device: 'cpu' }, offload_optimizer: { device: 'cpu' } }, { bf16: { enabled: false } })).rejects.toThrow(/offload_param with fp32 parameters is not supported/);
  });
});
