// `pnpm bench`: two ranks on this host run bench/worker.ts; this prints the table and writes
// bench/results.json (ARCHITECTURE.md section 6). `--smoke` runs one tiny iteration of each row.
//
// Anchor: PyTorch's gloo backend on this 2-core machine, 2 ranks: 1.17 GB/s allreduce busbw at
// 64 MiB and 0.36 GB/s at 1 MiB. Those are published figures (the issue's), not measured here:
// torch is not installed on this machine. A single-thread memcpy is measured in the same run and
// each row also reports its fraction of the copy-bandwidth bound derived from it (see bound()).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { table, writeResults, type Row } from '@ds-internal/bench-kit';

import type { PerfRow } from '../src/comm/perf.js';
import { describeWorld, withWorld } from '../test/helpers/world.js';

const here = dirname(fileURLToPath(import.meta.url));
const smoke = process.argv.includes('--smoke');
const GLOO = 'PyTorch gloo allreduce, 2 ranks on this 2-core machine (published figure from issue 5, not measured in this run)';
const anchors: Record<string, number> = { allreduce_64MiB: 1.17, allreduce_1MiB: 0.36, allreduce_64MiB_registered: 1.17 };

/**
 * Upper bound on 2-rank allreduce busbw from the copy bandwidth B (bytes copied per second by one
 * thread; each rank has its own core). Counting memory traffic per rank in units of "bytes
 * copied" (one read plus one write): the staged path copies in the half the peer needs (S/2),
 * reduces its half reading two halves and writing two (S), and copies out the peer's half (S/2):
 * 2S, so algbw <= B/2. The registered path only reduces (S): algbw <= B. busbw = algbw for n = 2.
 */
function bound(copyGBs: number, registered: boolean): number {
  return registered ? copyGBs : copyGBs / 2;
}

async function main(): Promise<void> {
  const w = await withWorld(2, join(here, 'worker.ts'), { env: { BENCH_SMOKE: smoke ? '1' : '0' }, timeoutMs: smoke ? 60_000 : 300_000 });
  const line = w.ranks[0]?.stdout.split('\n').find((l) => l.startsWith('BENCH '));
  if (w.timedOut || w.ranks.some((r) => r.code !== 0) || !line) {
    console.error(describeWorld(w));
    throw new Error('bench ranks failed');
  }
  const { memcpyGBs, memcpySamples, rows } = JSON.parse(line.slice(6)) as { memcpyGBs: number; memcpySamples: number[]; rows: Record<string, PerfRow> };
  const out: Row[] = [
    {
      metric: 'memcpy_64MiB_1t',
      value: memcpyGBs,
      unit: 'GB/s',
      anchor: null,
      anchorValue: null,
      ratio: null,
      config: { bytes: smoke ? 1 << 20 : 64 << 20, threads: 1, samples: memcpySamples, method: 'TypedArray.set, best of 8 per sample, both ranks copying at once; a sample before each row and one after; value = best sample', smoke },
    },
  ];
  for (const [key, row] of Object.entries(rows)) {
    const metric = key.endsWith('_registered') ? `${key.replace('_registered', '')}_2r_busbw_registered` : `${key}_2r_busbw`;
    const anchorValue = anchors[key]!;
    const b = bound(memcpyGBs, row.registered);
    out.push({
      metric,
      value: row.busbw,
      unit: 'GB/s',
      anchor: GLOO,
      anchorValue,
      ratio: row.busbw / anchorValue,
      config: {
        op: 'allreduce',
        bytes: row.bytes,
        dtype: row.dtype,
        ranks: row.ranks,
        registered: row.registered,
        timeUs: row.timeUs,
        algbw: row.algbw,
        copyBoundGBs: b,
        fractionOfCopyBound: row.busbw / b,
        note: `${((row.busbw / b) * 100).toFixed(0)}% of the copy bound (${b.toFixed(2)} GB/s)`,
        definition: 'nccl-tests: algbw = S/t, busbw = algbw * 2(n-1)/n; t = slowest rank, best of 5 timed loops',
        smoke,
      },
    });
  }
  console.log(table(out));
  console.log(writeResults(here, out, { smoke }));
  console.log(`anchor: ${GLOO}`);
}

await main();
