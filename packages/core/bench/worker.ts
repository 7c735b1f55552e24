// One rank of `pnpm bench` (bench/run.ts starts two): measures single-thread memcpy and the
// allReduce rows, and rank 0 prints one JSON line `BENCH {...}` for run.ts to collect.
import { initDistributed } from '../src/comm/index.js';
import { measure, type PerfRow } from '../src/comm/perf.js';

const smoke = process.env.BENCH_SMOKE === '1';
const MiB = 1024 * 1024;
const d = await initDistributed();
const g = d.world;

/** Single-thread copy of `bytes` (TypedArray.set is a memmove), best of `reps`, in GB/s of bytes copied. */
function memcpyGBs(bytes: number, reps: number): number {
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes).fill(2);
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  return bytes / (best / 1000) / 1e9;
}

const rows: Record<string, PerfRow> = {};
// The machine is shared: copy bandwidth is sampled before each row and after the last (both ranks
// copying at once, as both do during the collectives), and the best sample is the bound.
const copySamples: number[] = [];
async function sampleCopy(): Promise<void> {
  await g.barrier();
  const mine = new Float32Array([memcpyGBs(smoke ? MiB : 64 * MiB, smoke ? 1 : 8)]);
  await g.allReduce({ dtype: 'f32', array: mine }, { op: 'min' });
  copySamples.push(mine[0]!);
}
const iters = (bytes: number): number => (smoke ? 1 : bytes >= 64 * MiB ? 10 : 200);
const reps = smoke ? 1 : 5;
for (const [key, bytes, registered] of [
  ['allreduce_64MiB', 64 * MiB, false],
  ['allreduce_1MiB', MiB, false],
  ['allreduce_64MiB_registered', 64 * MiB, true],
] as const) {
  await sampleCopy();
  const size = smoke ? Math.min(bytes, 256 * 1024) : bytes;
  rows[key] = await measure(g, 'allreduce', size, { iters: iters(size), reps, warmup: smoke ? 0 : 2, registered });
}
await sampleCopy();
if (d.rank === 0) console.log(`BENCH ${JSON.stringify({ memcpyGBs: Math.max(...copySamples), memcpySamples: copySamples, rows })}`);
await d.destroy();
