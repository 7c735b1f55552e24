// Lab: where the offloaded ZeRO-3 step of bench/offload-step.ts spends its time beyond the
// compute-only step. Times forward, backward and step of both engines, and (through a wrapped I/O
// engine) the time the offloaded one blocks on reads and writes in each phase and the bytes it moves.
// `tsx bench/lab/offload-profile.ts [steps] [dir]`; DS_PROFILE_AIO='{"queue_depth":32}' adds an aio
// section, DS_PROFILE_ZERO='{...}' overrides zero_optimization keys of the offloaded engine.
import { loadavg, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';

import { batch } from '@ds-internal/gpt-fixtures';
import { initialize, type Engine, type OffloadWork } from '@ds/core';
import { GPT, tidy, type Tensor } from '@ds/tensor';
import { zero } from '@ds/zero';

import { AioEngine, offloadNvme, type IoEngine } from '../../src/index.js';
import { tappedEngine } from '../offload-step.js';

const steps = Number(process.argv[2] ?? 5);
const dir = process.argv[3] ?? process.env.DS_BENCH_DIR ?? tmpdir();
const gpt = { vocabSize: 1024, blockSize: 128, nLayer: 8, nHead: 4, nEmbd: 256, seed: 1 };
const rows = 4;

const blocked = { read: 0, write: 0, reads: 0, writes: 0, readBytes: 0, writeBytes: 0 };
function timed(w: OffloadWork, kind: 'read' | 'write'): OffloadWork {
  return {
    isCompleted: () => w.isCompleted(),
    waitSync() {
      const t = performance.now();
      try {
        w.waitSync();
      } finally {
        blocked[kind] += performance.now() - t;
      }
    },
    async wait() {
      const t = performance.now();
      try {
        await w.wait();
      } finally {
        blocked[kind] += performance.now() - t;
      }
    },
  };
}
function profiling(inner: IoEngine): IoEngine {
  return tappedEngine(inner, (kind, bytes, work) => {
    blocked[kind === 'read' ? 'reads' : 'writes']++;
    blocked[kind === 'read' ? 'readBytes' : 'writeBytes'] += bytes;
    return timed(work, kind);
  });
}

const nvme = { device: 'nvme', nvme_path: dir };
const zeroSection = { stage: 3, sub_group_size: 1_000_000, stage3_param_persistence_threshold: 10_000 };
const extra = JSON.parse(process.env.DS_PROFILE_ZERO ?? '{}') as object;
const aio = JSON.parse(process.env.DS_PROFILE_AIO ?? 'null') as object | null;
const config = (offload: boolean) => ({
  ...(aio ? { aio } : {}),
  train_micro_batch_size_per_gpu: rows,
  gradient_accumulation_steps: 1,
  bf16: { enabled: true },
  optimizer: { type: 'AdamW', params: { lr: 1e-3, weight_decay: 0.01 } },
  zero_optimization: offload ? { ...zeroSection, offload_optimizer: { ...nvme, pipeline_read: true, pipeline_write: true, buffer_count: 9 }, offload_param: { ...nvme, max_in_cpu: 0 }, ...extra } : zeroSection,
});
const plugins = [zero(), offloadNvme({ ioEngine: (o) => profiling(new AioEngine(o)) })];
const resident = (await initialize({ model: new GPT(gpt), config: config(false), plugins, dist: null, log: () => {} })).engine;
const offloaded = (await initialize({ model: new GPT(gpt), config: config(true), plugins, dist: null, log: () => {} })).engine;

async function phases(engine: Engine, s: number) {
  const t0 = performance.now();
  const { ids, targets } = batch(s, 0, 0, rows, gpt.blockSize, gpt.vocabSize);
  const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
  const t1 = performance.now();
  const w1 = blocked.read + blocked.write;
  await engine.backward(loss);
  const t2 = performance.now();
  const w2 = blocked.read + blocked.write;
  loss.dispose();
  ids.dispose();
  targets.dispose();
  await engine.step();
  const t3 = performance.now();
  const w3 = blocked.read + blocked.write;
  return { fwd: t1 - t0, bwd: t2 - t1, step: t3 - t2, total: t3 - t0, fwdWait: w1, bwdWait: w2 - w1, stepWait: w3 - w2 };
}

await phases(resident, 0);
await phases(offloaded, 0);
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const load0 = loadavg();
const R: Record<string, number[]>[] = [{}, {}];
for (let s = 1; s <= steps; s++) {
  Object.assign(blocked, { read: 0, write: 0, reads: 0, writes: 0, readBytes: 0, writeBytes: 0 });
  const r = await phases(resident, s);
  Object.assign(blocked, { read: 0, write: 0, reads: 0, writes: 0, readBytes: 0, writeBytes: 0 });
  const o = await phases(offloaded, s);
  const b = { ...blocked };

  for (const [k, v] of Object.entries(r)) (R[0]![k] ??= []).push(v);
  for (const [k, v] of Object.entries({ ...o, readWait: b.read, writeWait: b.write, reads: b.reads, writes: b.writes, MBread: b.readBytes / 1e6, MBwritten: b.writeBytes / 1e6 })) (R[1]![k] ??= []).push(v);
  console.log(`step ${s}: resident ${JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' ? +v.toFixed(1) : v))} offloaded ${JSON.stringify({ ...o, readWait: b.read, writeWait: b.write }, (_k, v: unknown) => (typeof v === 'number' ? +v.toFixed(1) : v))}`);
}
const load1 = loadavg();
for (const [name, r] of [['compute-only', R[0]!], ['offloaded', R[1]!]] as const) {
  console.log(`${name.padEnd(13)} ${Object.entries(r).map(([k, v]) => `${k} ${med(v).toFixed(1)}`).join('  ')}`);
}
console.log(`ratio (median totals) ${(med(R[1]!.total!) / med(R[0]!.total!)).toFixed(3)}; load ${load0.map((x) => x.toFixed(2)).join(' ')} -> ${load1.map((x) => x.toFixed(2)).join(' ')}`);
resident.destroy();
offloaded.destroy();
