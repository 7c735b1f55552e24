// `pnpm bench`: two ranks on this host run bench/worker.ts; this prints the table and writes
// bench/results.json (ARCHITECTURE.md section 6). `--smoke` runs one tiny iteration of each row.
//
// Anchor: PyTorch's gloo backend, 2 ranks on this host, measured in the same run by
// bench-kit's gloo_anchor.py the way src/comm/perf.ts measures ours, once before our ranks and once after
// (the faster of the two counts; both are in the config). Without an importable torch the rows
// report the anchor missing. A single-thread memcpy is measured in the same run and each row also
// reports its fraction of the copy-bandwidth bound derived from it (see bound()).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { glooAnchor, machineState, table, writeResults, type GlooRun, type Row } from '@ds-internal/bench-kit';
import { describeWorld, withWorld } from '@ds-internal/test-kit';

import type { PerfRow } from '../src/comm/perf.js';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

const here = dirname(fileURLToPath(import.meta.url));
const smoke = process.argv.includes('--smoke');
const GLOO = 'PyTorch gloo allreduce (f32), 2 ranks on this host, same run';
const MiB = 1024 * 1024;
/** Each row's gloo counterpart: the registered row is judged against gloo at the same size. */
const GLOO_SIZE: Record<string, string> = { allreduce_64MiB: 'allreduce_64MiB', allreduce_1MiB: 'allreduce_1MiB', allreduce_64MiB_registered: 'allreduce_64MiB' };

function glooRun(): GlooRun | string {
  const size = (bytes: number) => (smoke ? Math.min(bytes, 256 * 1024) : bytes);
  return glooAnchor({ sizes: { allreduce_64MiB: size(64 * MiB), allreduce_1MiB: size(MiB) }, reps: smoke ? 1 : 5, warmup: smoke ? 0 : 2, smoke });
}

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
  const glooBefore = glooRun();
  const w = await withWorld(2, join(here, 'worker.ts'), { env: { BENCH_SMOKE: smoke ? '1' : '0' }, timeoutMs: smoke ? 60_000 : 300_000 });
  const line = w.ranks[0]?.stdout.split('\n').find((l) => l.startsWith('BENCH '));
  if (w.timedOut || w.ranks.some((r) => r.code !== 0) || !line) {
    console.error(describeWorld(w));
    throw new Error('bench ranks failed');
  }
  const { memcpyGBs, memcpySamples, rows } = JSON.parse(line.slice(6)) as { memcpyGBs: number; memcpySamples: number[]; rows: Record<string, PerfRow> };
  const glooAfter = glooRun();
  const glooRuns = [glooBefore, glooAfter].filter((g): g is GlooRun => typeof g !== 'string');
  const glooWhy = [glooBefore, glooAfter].find((g): g is string => typeof g === 'string') ?? 'no gloo figure';
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
    const glooKey = GLOO_SIZE[key]!;
    const glooBusbw = glooRuns.map((g) => g.rows[glooKey]?.busbw).filter((x): x is number => typeof x === 'number');
    const anchorValue = glooBusbw.length ? Math.max(...glooBusbw) : null;
    const b = bound(memcpyGBs, row.registered);
    out.push({
      metric,
      value: row.busbw,
      unit: 'GB/s',
      anchor: anchorValue === null ? null : glooKey === key ? GLOO : `${GLOO} (gloo has no registered buffers: the same size)`,
      anchorValue,
      ratio: anchorValue === null ? null : row.busbw / anchorValue,
      config: {
        ...(anchorValue === null
          ? { anchorMissing: glooWhy }
          : { torch: glooRuns[0]!.torch, glooBusbwRuns: glooBusbw, glooStatistic: 'faster of a run before ours and one after' }),
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
  console.log(writeResults(here, out, { before, smoke }));
}

await main();
