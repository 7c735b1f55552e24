// `pnpm bench`: two ranks on this host under mpirun run bench/worker.ts; this prints the table and
// writes bench/results.json (ARCHITECTURE.md section 6). `--smoke` runs one tiny iteration of each row.
//
// Rows: mpi_allreduce_{1MiB,64MiB}_2r_busbw (f32, nccl-tests' busbw, best of 5 timed loops, the
// slowest rank's time; @ds/core's `measure`). Anchor: PyTorch's gloo backend, 2 ranks on this host,
// measured in the same run by bench-kit's gloo_anchor.py, once before our ranks and once after (the
// faster counts; both are in the config). Beside each row, in its config: core's cpu backend on the
// same ranks over its TCP transport (the path between hosts) and over shared memory.
import { spawn, spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { glooAnchor, machineState, table, writeResults, type GlooRun, type Row } from '@ds-internal/bench-kit';
import { freePort, tsNodeArgs } from '@ds-internal/test-kit';
import type { PerfRow } from '@ds/core';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

const here = dirname(fileURLToPath(import.meta.url));
const smoke = process.argv.includes('--smoke');
const GLOO = 'PyTorch gloo allreduce (f32), 2 ranks on this host, same run';
const MiB = 1024 * 1024;

function glooRun(): GlooRun | string {
  const size = (bytes: number) => (smoke ? Math.min(bytes, 256 * 1024) : bytes);
  return glooAnchor({ sizes: { allreduce_64MiB: size(64 * MiB), allreduce_1MiB: size(MiB) }, reps: smoke ? 1 : 5, warmup: smoke ? 0 : 2, smoke });
}

/** The MPI ranks: mpirun with Open MPI's defaults (shared memory between ranks of one host). */
async function mpiRanks(): Promise<{ mpiVersion: string; rows: Record<string, Record<string, PerfRow>> }> {
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) throw new Error('mpirun is not on PATH: install openmpi-bin and libopenmpi-dev');
  const args = ['-np', '2', '--oversubscribe', ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), process.execPath, ...tsNodeArgs(join(here, 'worker.ts'))];
  const child = spawn('mpirun', args, { env: { ...process.env, BENCH_SMOKE: smoke ? '1' : '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(await freePort()) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '', err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), smoke ? 90_000 : 600_000);
  const code = await new Promise<number | null>((done) => child.on('close', done));
  clearTimeout(timer);
  const line = out.split('\n').find((l) => l.startsWith('BENCH '));
  if (code !== 0 || !line) throw new Error(`bench ranks failed (exit ${code}):\n${out}\n${err}`);
  return JSON.parse(line.slice(6));
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const glooBefore = glooRun();
  const { mpiVersion, rows } = await mpiRanks();
  const glooAfter = glooRun();
  const loadAfter = loadavg();
  const glooRuns = [glooBefore, glooAfter].filter((g): g is GlooRun => typeof g !== 'string');
  const glooWhy = [glooBefore, glooAfter].find((g): g is string => typeof g === 'string') ?? 'no gloo figure';
  const out: Row[] = [];
  for (const [key, byBackend] of Object.entries(rows)) {
    const mpi = byBackend.mpi!, tcp = byBackend.cpu_tcp!, shm = byBackend.cpu_shm!;
    const gloo = glooRuns.map((g) => g.rows[key]?.busbw).filter((x): x is number => typeof x === 'number');
    const anchorValue = gloo.length ? Math.max(...gloo) : null;
    out.push({
      metric: `mpi_${key}_2r_busbw`,
      value: mpi.busbw,
      unit: 'GB/s',
      anchor: anchorValue === null ? null : GLOO,
      anchorValue,
      ratio: anchorValue === null ? null : mpi.busbw / anchorValue,
      config: {
        ...(anchorValue === null ? { anchorMissing: glooWhy } : { torch: glooRuns[0]!.torch, glooBusbwRuns: gloo, glooStatistic: 'faster of a run before ours and one after' }),
        mpi: mpiVersion,
        mpiTransport: "Open MPI defaults under mpirun (btl vader: shared memory between the two ranks)",
        op: 'allreduce',
        bytes: mpi.bytes,
        dtype: mpi.dtype,
        ranks: mpi.ranks,
        timeUs: mpi.timeUs,
        algbw: mpi.algbw,
        cpuTcpBusbw: tcp.busbw,
        cpuTcpOverMpi: tcp.busbw / mpi.busbw,
        cpuTcpOverGloo: anchorValue === null ? null : tcp.busbw / anchorValue,
        cpuShmBusbw: shm.busbw,
        note: `cpu backend: tcp ${tcp.busbw.toFixed(2)} GB/s${anchorValue === null ? '' : ` (${(tcp.busbw / anchorValue).toFixed(2)}x gloo)`}, shm ${shm.busbw.toFixed(2)} GB/s`,
        definition: 'nccl-tests: algbw = S/t, busbw = algbw * 2(n-1)/n; t = slowest rank, best of 5 timed loops',
        cpu: cpus()[0]?.model,
        loadavgBefore: loadBefore,
        loadavgAfter: loadAfter,
        smoke,
      },
    });
  }
  console.log(table(out));
  console.log(`load average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadAfter.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(writeResults(here, out, { before, smoke }));
}

await main();
