// Run by test/fake-library.test.ts in a process of its own: the addon loads the fake CUDA + NCCL
// library (test/fake/fake-cuda-nccl.cc) given as argv[2], then a world of one runs on the nccl
// backend; argv[3] picks the scenario. Prints one JSON line.
import { DSCommError, DSShapeError, DSTimeoutError, DSUnsupportedError, initDistributed, type CommBuffer, type CommEvent } from '@ds/core';
import { DeviceArray, type DType, type HostArray } from '@ds/tensor';

import { CudaMemory, loadNcclAddon, ncclBackend } from '../../src/index.js';

const [fake, scenario] = process.argv.slice(2) as [string, string];
const addon = loadNcclAddon();
addon.probe([fake], [fake]);
const dist = await initDistributed({ backend: ncclBackend(), timeoutMs: 400 });
const world = dist.world;
const mem = new CudaMemory(addon, 0);
const events: CommEvent[] = [];
world.addObserver((e) => events.push(e));

// Core's ProcessGroup type still says host buffers until its AnyCommBuffer change lands.
const dev = (dtype: DType, array: DeviceArray): CommBuffer => ({ dtype, array }) as unknown as CommBuffer;
const KIND = { f32: 'f32', bf16: 'u16', f16: 'u16', i32: 'i32', u8: 'u8' } as const;
const HOST = { f32: Float32Array, bf16: Uint16Array, f16: Uint16Array, i32: Int32Array, u8: Uint8Array } as const;
function data(dtype: DType, n: number, seed: number): HostArray {
  const a = new HOST[dtype](n);
  for (let i = 0; i < n; i++) a[i] = ((i * 7 + seed) % 13) + (dtype === 'f32' ? 0.5 : 0);
  return a;
}
const errorOf = async (f: () => unknown): Promise<Error | undefined> => {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  return undefined;
};
const describe = (e: Error | undefined) => e && { name: e.constructor.name, message: e.message, timeout: e instanceof DSTimeoutError, comm: e instanceof DSCommError };

const report: Record<string, unknown> = { scenario };
if (scenario === 'ops') {
  const mismatches: string[] = [];
  let checked = 0;
  const same = (what: string, got: HostArray, want: HostArray) => {
    checked++;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return void mismatches.push(`${what}[${i}]: ${got[i]} vs ${want[i]}`);
  };
  for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8'] as DType[]) {
    const n = 24;
    const x = data(dtype, n, 1);
    const a = mem.from(x);
    await world.allReduce(dev(dtype, a), { op: dtype === 'i32' || dtype === 'u8' ? 'max' : 'avg' });
    same(`allReduce ${dtype}`, mem.download(a, new HOST[dtype](n)), x);
    const out = mem.alloc(KIND[dtype], n);
    await world.reduceScatter(dev(dtype, out), dev(dtype, a));
    same(`reduceScatter ${dtype}`, mem.download(out, new HOST[dtype](n)), x);
    await world.allGather(dev(dtype, out), dev(dtype, out)); // in place: input = block 0 of output
    same(`allGather in place ${dtype}`, mem.download(out, new HOST[dtype](n)), x);
    await world.broadcast(dev(dtype, a), { root: 0 });
    same(`broadcast ${dtype}`, mem.download(a, new HOST[dtype](n)), x);
    const y = data(dtype, n, 5);
    mem.upload(out, y);
    await world.allToAll(dev(dtype, a), dev(dtype, out));
    same(`allToAll ${dtype}`, mem.download(a, new HOST[dtype](n)), y);
    mem.upload(a, x);
    await world.allToAll(dev(dtype, a), dev(dtype, a)); // in place: staged through a copy
    same(`allToAll in place ${dtype}`, mem.download(a, new HOST[dtype](n)), x);
    mem.free(a);
    mem.free(out);
  }
  await world.barrier();
  // Async handles: several in flight, finished through waitSync (as a hook would) and await.
  const xs = [1, 2, 3].map((k) => mem.from(data('f32', 1 << 12, k)));
  const works = xs.map((a) => world.allReduce(dev('f32', a)));
  works[2]!.waitSync!();
  await works[0];
  works[1]!.waitSync!();
  report.completed = works.every((w) => w.isCompleted());
  report.seqs = works.map((w) => w.seq);
  const hostArray = await errorOf(() => world.allReduce({ dtype: 'f32', array: new Float32Array(8) }));
  const foreign = await errorOf(() => world.allReduce(dev('f32', new DeviceArray({ device: 'cuda', byteLength: 32, address: 4096n }, 'f32', 0, 8))));
  const registered = await errorOf(() => world.allocRegistered(64));
  report.errors = {
    hostArray: { ...describe(hostArray), shape: hostArray instanceof DSShapeError },
    foreign: describe(foreign),
    registered: { ...describe(registered), unsupported: registered instanceof DSUnsupportedError },
  };
  // A rejected pointer gives its sequence number back: the next collective continues the count.
  report.afterRejected = world.barrier().seq;
  report.checked = checked;
  report.mismatches = mismatches;
  report.observed = { count: events.length, latencyMs: events[0]?.latencyMs, ok: events.every((e) => e.ok), ops: [...new Set(events.map((e) => e.op))] };
  await dist.destroy();
} else if (scenario === 'hang' || scenario === 'hang-sync') {
  const a = mem.from(data('f32', 16, 1));
  await world.allReduce(dev('f32', a));
  const started = Date.now();
  const work = world.allReduce(dev('f32', a));
  report.timedOut = describe(await errorOf(() => (scenario === 'hang' ? work.wait() : work.waitSync!())));
  report.ms = Date.now() - started;
  report.after = describe(await errorOf(() => world.allReduce(dev('f32', a))));
  await dist.destroy();
} else if (scenario === 'async') {
  const a = mem.from(data('f32', 16, 1));
  report.failed = describe(await errorOf(() => world.allReduce(dev('f32', a))));
  await dist.destroy();
} else if (scenario === 'exit') {
  const a = mem.from(data('f32', 16, 1));
  void world.allReduce(dev('f32', a), { timeoutMs: 60_000 }).then(undefined, () => undefined);
  console.log(JSON.stringify({ scenario, exiting: true }));
  // The op hangs on the "GPU"; exiting must abort the communicator instead of waiting for it.
  setTimeout(() => process.exit(3), 100);
}
if (scenario !== 'exit') console.log(JSON.stringify(report));
