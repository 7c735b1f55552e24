// One rank of `pnpm bench` (bench/run.ts starts two under mpirun): allReduce busbw on the mpi
// backend and, on the same ranks and sizes, on core's cpu backend over its TCP transport (and its
// default shared-memory transport). Rank 0 prints one line `BENCH {...}`.
import { cpuBackend, initDistributed, measure, PrefixStore, type PerfRow, type ProcessGroup } from '@ds/core';

import { mpiBackend } from '../src/index.js';

const smoke = process.env.BENCH_SMOKE === '1';
const MiB = 1024 * 1024;
const d = await initDistributed({ backend: mpiBackend() });
const ranks = [0, 1];
const cpuGroup = (transport: 'tcp' | 'shm'): Promise<ProcessGroup> =>
  cpuBackend({ transport }).createGroup({ name: `cpu-${transport}`, ranks, rank: d.rank, store: new PrefixStore(`cpu-${transport}`, d.store), timeoutMs: 120_000 });
const groups: Record<string, ProcessGroup> = { mpi: d.world, cpu_tcp: await cpuGroup('tcp'), cpu_shm: await cpuGroup('shm') };

const iters = (bytes: number): number => (smoke ? 1 : bytes >= 64 * MiB ? 10 : 200);
const reps = smoke ? 1 : 5;
const rows: Record<string, Record<string, PerfRow>> = {};
for (const [key, bytes] of [['allreduce_1MiB', MiB], ['allreduce_64MiB', 64 * MiB]] as const) {
  const size = smoke ? Math.min(bytes, 256 * 1024) : bytes;
  rows[key] = {};
  for (const [name, g] of Object.entries(groups)) {
    await d.world.barrier();
    rows[key]![name] = await measure(g, 'allreduce', size, { iters: iters(size), reps, warmup: smoke ? 0 : 2 });
  }
}
if (d.rank === 0) console.log(`BENCH ${JSON.stringify({ mpiVersion: (d.world as { mpiVersion?: string }).mpiVersion, rows })}`);
await groups.cpu_tcp!.destroy();
await groups.cpu_shm!.destroy();
await d.destroy();
