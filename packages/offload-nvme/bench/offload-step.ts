// The `offload_nvme_step_s` row: one training step of a GPT at ZeRO stage 3 with the fp32 masters,
// the Adam moments (offload_optimizer) and the 16-bit parameter shard (offload_param) in nvme swap
// files, against the anchor max(compute-only step, bytes moved / fio bandwidth) measured in the same
// run: the step of the same model without offload, and the time fio would take to move the bytes
// the offloaded step moved through the I/O engine (counted, read and written separately, divided by
// fio's read and write bandwidth from the aio rows). An offloaded step can be no faster than either;
// the target is within 1.2x of the larger. Steps alternate between the two engines so that drift on
// a shared machine hits both; the row reports medians.
import { performance } from 'node:perf_hooks';

import { batch } from '@ds-internal/gpt-fixtures';
import type { Row } from '@ds-internal/bench-kit';
import { initialize, type Engine, type OffloadWork } from '@ds/core';
import { GPT, tidy, type Tensor } from '@ds/tensor';
import { zero } from '@ds/zero';

import { AioEngine, offloadNvme, type IoEngine } from '../src/index.js';

export interface StepBenchOptions {
  smoke: boolean;
  /** The directory of the swap files (the aio rows' directory). */
  dir: string;
  /** fio's median GB/s from the aio rows; null when fio is missing, with the reason. */
  fio: { read: number; write: number } | null;
  fioProblem: string;
}

/** `inner` with every read and write handed to `tap` (the bytes asked for, and the Work, which tap may wrap). */
export function tappedEngine(inner: IoEngine, tap: (kind: 'read' | 'write', bytes: number, work: OffloadWork) => OffloadWork): IoEngine {
  return {
    get backend() {
      return inner.backend;
    },
    open: (path, opts) => inner.open(path, opts),
    reserve: (file, bytes) => inner.reserve(file, bytes),
    read: (file, dst, offset) => tap('read', dst.byteLength, inner.read(file, dst, offset)),
    write: (file, src, offset) => tap('write', src.byteLength, inner.write(file, src, offset)),
    closeFile: (file) => inner.closeFile(file),
    close: () => inner.close(),
  };
}

/** The native engine, counting the bytes it reads and writes. */
function countingEngine(inner: IoEngine, moved: { read: number; write: number }): IoEngine {
  return tappedEngine(inner, (kind, bytes, work) => {
    moved[kind] += bytes;
    return work;
  });
}

/** One optimizer step (one micro batch: gradient_accumulation_steps 1) in seconds. */
async function timedStep(engine: Engine, step: number, rows: number, t: number, vocab: number): Promise<number> {
  const t0 = performance.now();
  const { ids, targets } = batch(step, 0, 0, rows, t, vocab);
  const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
  await engine.backward(loss);
  loss.dispose();
  ids.dispose();
  targets.dispose();
  await engine.step();
  return (performance.now() - t0) / 1000;
}

export async function offloadStepRow(opts: StepBenchOptions): Promise<Row> {
  const { smoke } = opts;
  const gpt = smoke ? { vocabSize: 256, blockSize: 32, nLayer: 2, nHead: 4, nEmbd: 64, seed: 1 } : { vocabSize: 1024, blockSize: 128, nLayer: 8, nHead: 4, nEmbd: 256, seed: 1 };
  const rows = smoke ? 1 : 4;
  // Steps take 0.3-0.4 s and this VM has slow phases of a few hundred ms (1.3-1.8x): 15 pairs for steady medians.
  const steps = smoke ? 1 : 15;
  const nvme = { device: 'nvme', nvme_path: opts.dir };
  const zeroSection = { stage: 3, sub_group_size: 1_000_000, stage3_param_persistence_threshold: 10_000 };
  const config = (offload: boolean) => ({
    train_micro_batch_size_per_gpu: rows,
    gradient_accumulation_steps: 1,
    bf16: { enabled: true },
    optimizer: { type: 'AdamW', params: { lr: 1e-3, weight_decay: 0.01 } },
    zero_optimization: offload
      ? { ...zeroSection, offload_optimizer: { ...nvme, pipeline_read: true, pipeline_write: true, buffer_count: 9 }, offload_param: { ...nvme, max_in_cpu: 0 } }
      : zeroSection,
  });
  const moved = { read: 0, write: 0 };
  const plugins = [zero(), offloadNvme({ ioEngine: (o) => countingEngine(new AioEngine(o), moved) })];
  const resident = (await initialize({ model: new GPT(gpt), config: config(false), plugins, dist: null, log: () => {} })).engine;
  const offloaded = (await initialize({ model: new GPT(gpt), config: config(true), plugins, dist: null, log: () => {} })).engine;
  const times = { resident: [] as number[], offloaded: [] as number[], read: [] as number[], write: [] as number[] };
  try {
    // The first step records stage 3's fetch order (no prefetch yet) and starts the moments: not timed.
    await timedStep(resident, 0, rows, gpt.blockSize, gpt.vocabSize);
    await timedStep(offloaded, 0, rows, gpt.blockSize, gpt.vocabSize);
    for (let s = 1; s <= steps; s++) {
      times.resident.push(await timedStep(resident, s, rows, gpt.blockSize, gpt.vocabSize));
      const before = { ...moved };
      times.offloaded.push(await timedStep(offloaded, s, rows, gpt.blockSize, gpt.vocabSize));
      times.read.push(moved.read - before.read);
      times.write.push(moved.write - before.write);
      console.log(`step ${s}/${steps}: offloaded ${times.offloaded.at(-1)!.toFixed(3)} s (${((times.read.at(-1)! + times.write.at(-1)!) / 1e6).toFixed(1)} MB moved), compute only ${times.resident.at(-1)!.toFixed(3)} s`);
    }
  } finally {
    resident.destroy();
    offloaded.destroy();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const value = med(times.offloaded);
  const compute = med(times.resident);
  const bytes = { read: med(times.read), write: med(times.write) };
  const ioTime = opts.fio ? bytes.read / (opts.fio.read * 1e9) + bytes.write / (opts.fio.write * 1e9) : null;
  const anchorValue = ioTime === null ? null : Math.max(compute, ioTime);
  const numel = new GPT(gpt).numParameters();
  return {
    metric: 'offload_nvme_step_s',
    value,
    unit: 's',
    anchor: anchorValue === null ? null : 'max(compute-only step: same model at stage 3 without offload, bytes moved / fio bandwidth), same run',
    anchorValue,
    ratio: anchorValue === null ? null : anchorValue / value,
    config: {
      gpt,
      params: numel,
      micro_batch: rows,
      ranks: 1,
      zero_optimization: config(true).zero_optimization,
      steps,
      smoke,
      compute_only_step_s: compute,
      bytes_read_per_step: bytes.read,
      bytes_written_per_step: bytes.write,
      fio_io_time_s: ioTime,
      passes_s: times.offloaded,
      compute_passes_s: times.resident,
      ...(anchorValue === null ? { anchorMissing: `${opts.fioProblem}; compute-only step ${compute.toFixed(3)} s` } : {}),
      note: 'target: ratio >= 0.83 (step <= 1.2x the anchor)',
    },
  };
}
