// On a GPU machine, one process per rank (withWorld): every op x dtype on the nccl backend (device
// buffers) and on core's cpu backend (host buffers, same inputs, sharing the job's store), compared
// element by element; then async handles, a subgroup, and (with `timeout`) a rank that never joins.
// Prints one JSON line per rank.
import { cpuBackend, DSTimeoutError, initDistributed, PrefixStore, type CommBuffer, type ProcessGroup, type ReduceOp } from '@ds/core';
import type { DeviceArray, DType, HostArray } from '@ds/tensor';

import { CudaMemory, loadNcclAddon, ncclBackend, ncclStatus } from '../../../src/index.js';

const scenario = process.argv[2] ?? 'ops';
const status = ncclStatus();
const rank0 = Number(process.env.RANK ?? 0);
const device = rank0 % Math.max(1, status.devices);
const dist = await initDistributed({ backend: ncclBackend({ device }), timeoutMs: scenario === 'timeout' ? 3000 : 60_000 });
const { rank, size } = dist;
const ranks = Array.from({ length: size }, (_, r) => r);
const mem = new CudaMemory(loadNcclAddon(), device);
const nccl = dist.world;

const HOST = { f32: Float32Array, bf16: Uint16Array, f16: Uint16Array, i32: Int32Array, u8: Uint8Array } as const;
const KIND = { f32: 'f32', bf16: 'u16', f16: 'u16', i32: 'i32', u8: 'u8' } as const;
// Core's ProcessGroup type still says host buffers until its AnyCommBuffer change lands.
const dev = (dtype: DType, array: DeviceArray): CommBuffer => ({ dtype, array }) as unknown as CommBuffer;
const host = (dtype: DType, array: HostArray): CommBuffer => ({ dtype, array });

if (scenario === 'timeout') {
  // Rank `size - 1` never calls the allReduce: the others time out naming it, then everyone leaves.
  let error = '';
  let timedOut = false;
  if (rank !== size - 1) {
    const a = mem.from(new Float32Array(1024).fill(1));
    try {
      await nccl.allReduce(dev('f32', a));
    } catch (e) {
      error = (e as Error).message;
      timedOut = e instanceof DSTimeoutError;
    }
  } else await new Promise((r) => setTimeout(r, 6000));
  console.log(JSON.stringify({ rank, size, timedOut, error }));
  process.exit(0);
}

const cpu = await cpuBackend().createGroup({ name: 'cpu-twin', ranks, rank, store: new PrefixStore('cpu-twin', dist.store), timeoutMs: 60_000 });

const f16Bits = (v: number): number => {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(v)));
  return (v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | Math.round((Math.abs(v) / 2 ** e - 1) * 1024);
};
const bf16Bits = (v: number): number => new Uint16Array(new Float32Array([v]).buffer)[1]!;
function data(dtype: DType, n: number, seed: number): HostArray {
  const a = new HOST[dtype](n);
  for (let i = 0; i < n; i++) {
    const small = ((i * 7 + rank * 13 + seed) % 17) - 8;
    if (dtype === 'f32') a[i] = small * 0.5;
    else if (dtype === 'bf16') a[i] = bf16Bits(small);
    else if (dtype === 'f16') a[i] = f16Bits(small);
    else if (dtype === 'i32') a[i] = (Math.imul(i + seed, 2654435761) + rank * 977) | 0;
    else a[i] = (i * 31 + rank * 7 + seed) & 255;
  }
  return a;
}
const halfValue = (dtype: DType, bits: number): number => {
  if (dtype === 'bf16') return new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
  const e = (bits >> 10) & 31, m = bits & 1023, s = bits & 0x8000 ? -1 : 1;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
};

let checked = 0;
const mismatches: string[] = [];
/** Exact, except avg (NCCL scales before summing, the cpu backend divides the sum once): within a few ulps. */
function compare(what: string, dtype: DType, got: HostArray, want: HostArray, approx: boolean): void {
  checked++;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    const [g, w] = dtype === 'bf16' || dtype === 'f16' ? [halfValue(dtype, got[i]!), halfValue(dtype, want[i]!)] : [got[i]!, want[i]!];
    const tol = dtype === 'bf16' ? 1e-2 : dtype === 'f16' ? 1e-3 : 1e-6;
    if (approx && Math.abs(g - w) <= tol * Math.max(1, Math.abs(w))) continue;
    return void mismatches.push(`${what}[${i}]: nccl ${g} cpu ${w}`);
  }
}

/** The same op on both backends from the same inputs; `outs` are the buffers compared afterwards. */
async function both(what: string, dtype: DType, approx: boolean, shape: { ins: HostArray[]; outLens: number[] }, op: (g: ProcessGroup, bufs: CommBuffer[]) => PromiseLike<void>): Promise<void> {
  const devIns = shape.ins.map((x) => mem.from(x));
  const devOuts = shape.outLens.map((n) => mem.alloc(KIND[dtype], n));
  await op(nccl, [...devOuts.map((a) => dev(dtype, a)), ...devIns.map((a) => dev(dtype, a))]);
  const hostIns = shape.ins.map((x) => x.slice());
  const hostOuts = shape.outLens.map((n) => new HOST[dtype](n));
  await op(cpu, [...hostOuts.map((a) => host(dtype, a)), ...hostIns.map((a) => host(dtype, a))]);
  devOuts.forEach((a, k) => compare(`${what} out${k}`, dtype, mem.download(a, new HOST[dtype](a.length)), hostOuts[k]!, approx));
  devIns.forEach((a, k) => compare(`${what} in${k}`, dtype, mem.download(a, new HOST[dtype](a.length)), hostIns[k]!, approx));
  for (const a of [...devIns, ...devOuts]) mem.free(a);
}

const n = 3 * size * 4 + 4 * size;
for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8'] as DType[]) {
  const isInt = dtype === 'i32' || dtype === 'u8';
  for (const op of (isInt ? ['sum', 'max', 'min'] : ['sum', 'avg', 'max', 'min']) as ReduceOp[]) {
    await both(`allReduce ${dtype} ${op}`, dtype, op === 'avg', { ins: [data(dtype, n, 1)], outLens: [] }, (g, [x]) => g.allReduce(x!, { op }));
    await both(`reduceScatter ${dtype} ${op}`, dtype, op === 'avg', { ins: [data(dtype, n, 2)], outLens: [n / size] }, (g, [o, i]) => g.reduceScatter(o!, i!, { op }));
  }
  await both(`allGather ${dtype}`, dtype, false, { ins: [data(dtype, n / size, 4)], outLens: [n] }, (g, [o, i]) => g.allGather(o!, i!));
  await both(`broadcast ${dtype}`, dtype, false, { ins: [data(dtype, n, 6)], outLens: [] }, (g, [x]) => g.broadcast(x!, { root: size - 1 }));
  await both(`allToAll ${dtype}`, dtype, false, { ins: [data(dtype, n, 7)], outLens: [n] }, (g, [o, i]) => g.allToAll(o!, i!));
  await both(`allToAll in place ${dtype}`, dtype, false, { ins: [data(dtype, n, 8)], outLens: [] }, (g, [x]) => g.allToAll(x!, x!));
  if (size > 1) {
    await both(`send/recv ring ${dtype}`, dtype, false, { ins: [data(dtype, n, 9)], outLens: [n] }, async (g, [o, i]) => {
      await Promise.all([g.recv(o!, { src: (rank + size - 1) % size }), g.send(i!, { dst: (rank + 1) % size })]);
    });
  }
}
await nccl.barrier();

// Async: three allReduces in flight, finished in another order, one through waitSync (as a hook does).
const xs = [10, 11, 12].map((k) => data('f32', 1 << 16, k) as Float32Array);
const ds = xs.map((x) => mem.from(x));
const works = ds.map((a) => nccl.allReduce(dev('f32', a)));
works[2]!.waitSync!();
await works[0];
works[1]!.waitSync!();
for (const [k, x] of xs.entries()) {
  await cpu.allReduce(host('f32', x));
  compare(`async allReduce #${k}`, 'f32', mem.download(ds[k]!, new Float32Array(x.length)), x, false);
}

let subgroup = 'skipped';
if (size > 1) {
  const members = [...ranks].reverse();
  const sub = (await dist.newGroup(members))!;
  const subCpu = await cpuBackend().createGroup({ name: 'cpu-sub', ranks: members, rank: members.indexOf(rank), store: new PrefixStore('cpu-sub', dist.store), timeoutMs: 60_000 });
  const x = data('f32', n, 13) as Float32Array;
  const a = mem.from(x);
  await sub.allReduce(dev('f32', a));
  await subCpu.allReduce(host('f32', x));
  compare('subgroup allReduce', 'f32', mem.download(a, new Float32Array(n)), x, false);
  subgroup = `${sub.name} rank ${sub.rank} of ${sub.size}`;
  await subCpu.destroy();
}

await cpu.destroy();
await dist.destroy();
console.log(JSON.stringify({ rank, size, device, checked, mismatches, subgroup, nccl: status.version }));
