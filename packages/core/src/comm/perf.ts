// Timing of collectives, nccl-tests style, shared by the ds-bench bin and bench/: for each size,
// a few warm-up ops, then `iters` ops submitted back to back and awaited once; the time per op is
// the slowest rank's (an allReduce max of each rank's measurement). S is the full array: the
// allReduce/broadcast buffer, allGather's output, reduceScatter's input, allToAll's input.
import { DSShapeError, fromArray, Tensor, type DType } from '@ds/tensor';

import { busFactor } from './bandwidth.js';
import type { AnyCommBuffer, CommArray, CommOpName, ProcessGroup, Work } from './types.js';

export type BenchOp = 'allreduce' | 'allgather' | 'reducescatter' | 'broadcast' | 'alltoall';
export const BENCH_OPS: readonly BenchOp[] = ['allreduce', 'allgather', 'reducescatter', 'broadcast', 'alltoall'];

const OP_NAME: Record<BenchOp, CommOpName> = {
  allreduce: 'allReduce',
  allgather: 'allGather',
  reducescatter: 'reduceScatter',
  broadcast: 'broadcast',
  alltoall: 'allToAll',
};

export interface PerfOptions {
  dtype?: DType;
  warmup?: number;
  iters?: number;
  /** Repeat the timed loop and keep the fastest (noisy shared machines); default 1. */
  reps?: number;
  /** Take the buffers from a registered region of the group. */
  registered?: boolean;
  /**
   * Where the buffers live: 'cpu' (default), or a device ('cuda' for nccl; 'sim' measures the cpu
   * backend through its staging copies). The slowest-rank time is reduced on the same device, so a
   * backend that moves only device memory (nccl) can be measured.
   */
  device?: string;
}

export interface PerfRow {
  op: BenchOp;
  bytes: number;
  elements: number;
  dtype: DType;
  ranks: number;
  registered: boolean;
  device: string;
  /** Microseconds per op (slowest rank). */
  timeUs: number;
  /** GB/s, nccl-tests definitions. */
  algbw: number;
  busbw: number;
}

const ESZ: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 };

function view(dtype: DType, buffer: ArrayBuffer, byteOffset: number, length: number): CommArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(buffer, byteOffset, length);
    case 'i32':
      return new Int32Array(buffer, byteOffset, length);
    case 'u8':
      return new Uint8Array(buffer, byteOffset, length);
    default:
      return new Uint16Array(buffer, byteOffset, length);
  }
}

/** Buffers for one op: (output, input) over fresh memory, a registered region, or device tensors (with `release` to free them). */
async function buffers(g: ProcessGroup, op: BenchOp, bytes: number, dtype: DType, registered: boolean, device: string): Promise<{ out: AnyCommBuffer; inp: AnyCommBuffer; release: () => void }> {
  const n = g.size;
  const esz = ESZ[dtype];
  const full = Math.floor(bytes / esz / n) * n;
  const inLen = op === 'allgather' ? full / n : full;
  const outLen = op === 'reducescatter' ? full / n : full;
  const inPlace = op === 'allreduce' || op === 'broadcast';
  if (device !== 'cpu') {
    if (registered) throw new DSShapeError(`ds-bench: --registered buffers are host shared memory; drop it to measure on '${device}'`);
    const tin = Tensor.empty([inLen], dtype, { device, category: 'communication', label: 'ds-bench input' });
    const tout = inPlace ? tin : Tensor.empty([outLen], dtype, { device, category: 'communication', label: 'ds-bench output' });
    tin.runtime.kernels(device).fill(dtype, tin.operand(), inLen, 1);
    const inp: AnyCommBuffer = { dtype, array: tin.operand() };
    return { inp, out: inPlace ? inp : { dtype, array: tout.operand() }, release: () => [tin, tout].forEach((t) => t.dispose()) };
  }
  const total = (inLen + (inPlace ? 0 : outLen)) * esz;
  const region = registered ? await g.allocRegistered(Math.max(total, 64)) : new ArrayBuffer(Math.max(total, 64));
  const inpArray = view(dtype, region, 0, inLen);
  inpArray.fill(1);
  const inp: AnyCommBuffer = { dtype, array: inpArray };
  const out: AnyCommBuffer = inPlace ? inp : { dtype, array: view(dtype, region, inLen * esz, outLen) };
  return { out, inp, release: () => {} };
}

/** The largest of every rank's `ms`, reduced on `device` (a backend may move only device memory). */
async function slowest(g: ProcessGroup, ms: number, device: string): Promise<number> {
  if (device === 'cpu') {
    const mine = new Float32Array([ms]);
    await g.allReduce({ dtype: 'f32', array: mine }, { op: 'max' });
    return mine[0]!;
  }
  const t = fromArray([ms], [1], { device });
  try {
    await g.allReduce({ dtype: 'f32', array: t.operand() }, { op: 'max' });
    return t.toArray()[0]!;
  } finally {
    t.dispose();
  }
}

function launch(g: ProcessGroup, op: BenchOp, out: AnyCommBuffer, inp: AnyCommBuffer): Work {
  switch (op) {
    case 'allreduce':
      return g.allReduce(inp);
    case 'allgather':
      return g.allGather(out, inp);
    case 'reducescatter':
      return g.reduceScatter(out, inp);
    case 'broadcast':
      return g.broadcast(inp, { root: 0 });
    case 'alltoall':
      return g.allToAll(out, inp);
  }
}

export async function measure(g: ProcessGroup, op: BenchOp, bytes: number, opts: PerfOptions = {}): Promise<PerfRow> {
  const dtype = opts.dtype ?? 'f32';
  const warmup = opts.warmup ?? 2;
  const iters = Math.max(1, opts.iters ?? 10);
  const registered = opts.registered ?? false;
  const device = opts.device ?? 'cpu';
  const { out, inp, release } = await buffers(g, op, bytes, dtype, registered, device);
  let best = Infinity;
  try {
    for (let i = 0; i < warmup; i++) await launch(g, op, out, inp);
    for (let rep = 0; rep < (opts.reps ?? 1); rep++) {
      await g.barrier();
      const t0 = performance.now();
      let last: Work | undefined;
      for (let i = 0; i < iters; i++) last = launch(g, op, out, inp);
      await last!;
      best = Math.min(best, await slowest(g, (performance.now() - t0) / iters, device));
    }
  } finally {
    release();
  }
  const fullBytes = op === 'allgather' ? out.array.byteLength : inp.array.byteLength;
  const seconds = best / 1000;
  const algbw = fullBytes / seconds / 1e9;
  return { op, bytes: fullBytes, elements: fullBytes / ESZ[dtype], dtype, ranks: g.size, registered, device, timeUs: best * 1000, algbw, busbw: algbw * busFactor(OP_NAME[op], g.size) };
}
