// Under mpirun: every op x dtype on the mpi backend and on core's cpu backend with the same inputs
// (the cpu group shares the job's store), compared bit for bit; prints one JSON line per rank.
import { cpuBackend, initDistributed, PrefixStore, type CommBuffer, type CommArray, type ProcessGroup, type ReduceOp } from '@ds/core';
import type { DType } from '@ds/tensor';

import { mpiBackend } from '../../src/index.js';

const DTYPES: DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8'];
const ARRAY = { f32: Float32Array, bf16: Uint16Array, f16: Uint16Array, i32: Int32Array, u8: Uint8Array } as const;
// Small integers as bf16/f16 bits: exact in every dtype, so sums of 4 ranks do not depend on order.
const HALF_BITS: Record<'bf16' | 'f16', (v: number) => number> = {
  bf16: (v) => new Uint16Array(new Float32Array([v]).buffer)[1]!,
  f16: (v) => f16Bits(v),
};
function f16Bits(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

function data(dtype: DType, n: number, rank: number, seed: number): CommArray {
  const a = new ARRAY[dtype](n);
  for (let i = 0; i < n; i++) {
    const small = ((i * 7 + rank * 13 + seed) % 17) - 8;
    if (dtype === 'f32') a[i] = small * 0.5;
    else if (dtype === 'bf16' || dtype === 'f16') a[i] = HALF_BITS[dtype](small);
    else if (dtype === 'i32') a[i] = (Math.imul(i + seed, 2654435761) + rank * 977) | 0;
    else a[i] = (i * 31 + rank * 7 + seed) & 255;
  }
  return a;
}
const buf = (dtype: DType, array: CommArray): CommBuffer => ({ dtype, array });
const copy = (a: CommArray): CommArray => a.slice();

const dist = await initDistributed({ backend: mpiBackend(), timeoutMs: 30_000 });
const { rank, size } = dist;
const ranks = Array.from({ length: size }, (_, r) => r);
const cpu = await cpuBackend().createGroup({ name: 'cpu-twin', ranks, rank, store: new PrefixStore('cpu-twin', dist.store), timeoutMs: 30_000 });
const mpi = dist.world;

let checked = 0;
const mismatches: string[] = [];
function compare(what: string, got: CommArray, want: CommArray): void {
  checked++;
  if (got.length !== want.length) return void mismatches.push(`${what}: length ${got.length} vs ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      mismatches.push(`${what}[${i}]: mpi ${got[i]} cpu ${want[i]}`);
      return;
    }
  }
}

/** Runs `op` on both groups with fresh copies of the same inputs; compares every output. */
async function both(what: string, run: (g: ProcessGroup) => Promise<CommArray[]>): Promise<void> {
  const [a, b] = [await run(mpi), await run(cpu)];
  a.forEach((x, k) => compare(`${what}#${k}`, x, b[k]!));
}

const n = 3 * size * 4 + 4 * size; // divisible by size; not a power of two
for (const dtype of DTYPES) {
  const isInt = dtype === 'i32' || dtype === 'u8';
  const ops: ReduceOp[] = isInt ? ['sum', 'max', 'min'] : ['sum', 'avg', 'max', 'min'];
  for (const op of ops) {
    await both(`allReduce ${dtype} ${op}`, async (g) => {
      const x = data(dtype, n, rank, 1);
      await g.allReduce(buf(dtype, x), { op });
      return [x];
    });
    await both(`reduceScatter ${dtype} ${op}`, async (g) => {
      const inp = data(dtype, n, rank, 2);
      const out = new ARRAY[dtype](n / size);
      await g.reduceScatter(buf(dtype, out), buf(dtype, inp), { op });
      return [out];
    });
  }
  await both(`reduceScatter in place ${dtype}`, async (g) => {
    const inp = data(dtype, n, rank, 3);
    const m = n / size;
    const out = new ARRAY[dtype](inp.buffer as ArrayBuffer, rank * m * inp.BYTES_PER_ELEMENT, m);
    await g.reduceScatter(buf(dtype, out), buf(dtype, inp), { op: 'sum' });
    return [copy(out)];
  });
  await both(`allGather ${dtype}`, async (g) => {
    const inp = data(dtype, n / size, rank, 4);
    const out = new ARRAY[dtype](n);
    await g.allGather(buf(dtype, out), buf(dtype, inp));
    return [out];
  });
  await both(`allGather in place ${dtype}`, async (g) => {
    const out = data(dtype, n, rank, 5);
    const m = n / size;
    await g.allGather(buf(dtype, out), buf(dtype, new ARRAY[dtype](out.buffer as ArrayBuffer, rank * m * out.BYTES_PER_ELEMENT, m)));
    return [out];
  });
  await both(`broadcast ${dtype}`, async (g) => {
    const x = data(dtype, n, rank, 6);
    await g.broadcast(buf(dtype, x), { root: size - 1 });
    return [x];
  });
  await both(`allToAll ${dtype}`, async (g) => {
    const inp = data(dtype, n, rank, 7);
    const out = new ARRAY[dtype](n);
    await g.allToAll(buf(dtype, out), buf(dtype, inp));
    return [out];
  });
  await both(`allToAll in place ${dtype}`, async (g) => {
    const x = data(dtype, n, rank, 8);
    await g.allToAll(buf(dtype, x), buf(dtype, x));
    return [x];
  });
  if (size > 1) {
    await both(`send/recv ring ${dtype}`, async (g) => {
      const out = new ARRAY[dtype](n);
      const r = g.recv(buf(dtype, out), { src: (rank + size - 1) % size });
      const s = g.send(buf(dtype, data(dtype, n, rank, 9)), { dst: (rank + 1) % size });
      await Promise.all([r, s]);
      return [out];
    });
  }
  await both(`barrier ${dtype}`, async (g) => {
    await g.barrier();
    return [];
  });
}

// Async: several ops in flight at once overlap with compute and complete in any wait order;
// waitSync blocks the thread (as hooks do) without the event loop.
const big = Array.from({ length: 3 }, (_, k) => data('f32', 1 << 16, rank, 10 + k) as Float32Array);
const twin = big.map((x) => x.slice());
const works = big.map((x) => mpi.allReduce(buf('f32', x)));
let acc = 0;
for (let i = 0; i < 200_000; i++) acc += Math.sqrt(i);
works[2]!.waitSync!();
await works[0];
works[1]!.waitSync!();
for (const t of twin) await cpu.allReduce(buf('f32', t));
big.forEach((x, k) => compare(`async allReduce #${k}`, x, twin[k]!));

// Subgroup: the ranks in reverse order (group rank 0 is the last world rank).
let subgroup = 'skipped';
if (size > 1) {
  const members = [...ranks].reverse();
  const sub = await dist.newGroup(members);
  const subCpu = await cpuBackend().createGroup({ name: 'cpu-sub', ranks: members, rank: members.indexOf(rank), store: new PrefixStore('cpu-sub', dist.store), timeoutMs: 30_000 });
  const a = data('f32', n, rank, 11), b = a.slice();
  const ga = new Float32Array(n * size), gb = new Float32Array(n * size);
  await sub!.allReduce(buf('f32', a));
  await subCpu.allReduce(buf('f32', b));
  await sub!.allGather(buf('f32', ga), buf('f32', data('f32', n, rank, 12)));
  await subCpu.allGather(buf('f32', gb), buf('f32', data('f32', n, rank, 12)));
  compare('subgroup allReduce', a, b);
  compare('subgroup allGather', ga, gb);
  subgroup = `${sub!.name} rank ${sub!.rank} of ${sub!.size}`;
  await subCpu.destroy();
}

await cpu.destroy();
await dist.destroy();
console.log(JSON.stringify({ rank, size, checked, mismatches, subgroup, acc: acc > 0 }));
