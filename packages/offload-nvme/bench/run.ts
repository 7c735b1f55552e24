// `pnpm --filter @ds/offload-nvme bench [--smoke]`: read and write GB/s of the async I/O engine
// against fio measured in the same run on the same file system with the same shape of I/O
// (io_uring, direct=1, 1 MiB blocks, queue depth 32, one job, the same file size). The engine runs
// once on io_uring and once on its pread/pwrite thread pool (the fallback). Passes alternate
// engine / fio so that drift on a shared machine hits both; each row reports the median of its passes.
// Anchor rows: ratio = ours / fio (above 1 is better). The bench installs fio with apt where it can,
// or says why the anchor is missing. DS_BENCH_DIR picks the directory (default: the OS temp dir).
// Then `offload_nvme_step_s` (bench/offload-step.ts): a ZeRO-3 training step with optimizer and
// parameter offload on nvme in that directory, against max(compute-only step, bytes moved / the fio
// bandwidth measured above); ratio = anchor / step (above 1 is better).
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { machineState, median, table, writeResults, type Row } from '@ds-internal/bench-kit';

import { memoryFileSystem, measureIo } from '../src/index.js';

import { offloadStepRow } from './offload-step.js';

const smoke = process.argv.includes('--smoke');
const MiB = 1 << 20;
const BYTES = smoke ? 16 * MiB : 1024 * MiB;
const PASSES = smoke ? 1 : 3;
const BLOCK = MiB;
const QD = 32;
const dir = process.env.DS_BENCH_DIR ?? tmpdir();
const fsType = memoryFileSystem(dir) || (spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim() || 'unknown');

/** fio on PATH, installed with apt-get when missing and allowed; else the reason it is not there. */
function findFio(): { fio: string } | { missing: string } {
  const has = () => spawnSync('fio', ['--version'], { encoding: 'utf8' }).status === 0;
  if (has()) return { fio: 'fio' };
  if (process.getuid?.() !== 0) return { missing: 'fio is not installed and the bench is not root to apt-get it (apt-get install fio)' };
  if (spawnSync('apt-get', ['--version']).status !== 0) return { missing: 'fio is not installed and there is no apt-get here' };
  console.log('bench: fio missing, installing it with apt-get ...');
  const r = spawnSync('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q fio || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q fio)'], { encoding: 'utf8', timeout: 300_000 });
  if (r.status === 0 && has()) return { fio: 'fio' };
  return { missing: `fio is not installed and apt-get install fio failed: ${(r.stderr || r.stdout || '').trim().split('\n').pop()}` };
}

/** One fio pass: GB/s of `rw` (read or write) on `file`, or the reason it failed. */
function fioPass(fio: string, file: string, rw: 'read' | 'write'): number | string {
  const args = [`--name=ds-anchor`, `--filename=${file}`, `--rw=${rw}`, `--bs=${BLOCK}`, `--iodepth=${QD}`, '--ioengine=io_uring', '--direct=1', `--size=${BYTES}`, '--numjobs=1', '--output-format=json'];
  const r = spawnSync(fio, args, { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) return `fio ${rw} failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
  const job = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { bw_bytes: number }; write: { bw_bytes: number } }[] }).jobs[0]!;
  return job[rw].bw_bytes / 1e9;
}

const found = findFio();
// The machine before anything of the bench runs: a busy one sends the rows to results.noisy.json.
const before = machineState();
const fioFile = join(dir, `ds-bench-fio-${process.pid}.bin`);
const ours: Record<string, { read: number[]; write: number[]; backend: string }> = { io_uring: { read: [], write: [], backend: '' }, threads: { read: [], write: [], backend: '' } };
const fio = { read: [] as number[], write: [] as number[] };
let fioProblem = 'fio' in found ? '' : found.missing;
const load0 = loadavg();

for (let pass = 0; pass < PASSES; pass++) {
  for (const backend of ['io_uring', 'threads'] as const) {
    const m = await measureIo({ path: dir, bytes: BYTES, blockSize: BLOCK, queueDepth: QD, threads: 1, backend: backend === 'io_uring' ? 'auto' : 'threads', loops: 1 });
    ours[backend]!.read.push(m.readGBps!);
    ours[backend]!.write.push(m.writeGBps!);
    ours[backend]!.backend = m.backend;
    console.log(`pass ${pass + 1}/${PASSES} ${m.backend}: write ${m.writeGBps!.toFixed(2)} GB/s, read ${m.readGBps!.toFixed(2)} GB/s`);
  }
  if ('fio' in found && !fioProblem) {
    for (const rw of ['write', 'read'] as const) {
      const r = fioPass(found.fio, fioFile, rw);
      if (typeof r === 'string') fioProblem = r;
      else fio[rw].push(r);
    }
    console.log(`pass ${pass + 1}/${PASSES} fio: write ${fio.write.at(-1)?.toFixed(2) ?? '-'} GB/s, read ${fio.read.at(-1)?.toFixed(2) ?? '-'} GB/s`);
  }
}
if (existsSync(fioFile)) rmSync(fioFile);

const load1 = loadavg();
const cpu = cpus()[0]?.model ?? 'unknown';
const common = { bytes: BYTES, block_size: BLOCK, queue_depth: QD, intra_op_parallelism: 1, direct: true, dir, fs: fsType, passes: PASSES, smoke, cpu, loadavg_start: load0, loadavg_end: load1 };
const rows: Row[] = [];
for (const backend of ['io_uring', 'threads'] as const) {
  const suffix = backend === 'io_uring' ? '' : '_threads';
  for (const rw of ['read', 'write'] as const) {
    const value = median(ours[backend]![rw]);
    const anchorValue = fio[rw].length ? median(fio[rw]) : null;
    rows.push({
      metric: `aio_${rw}_gbps${suffix}`,
      value,
      unit: 'GB/s',
      anchor: anchorValue === null ? null : `fio ${rw}: io_uring, direct=1, bs=1M, iodepth=32, 1 job, same file size and file system, same run`,
      anchorValue,
      ratio: anchorValue === null ? null : value / anchorValue,
      config: { ...common, backend: ours[backend]!.backend, passes_gbps: ours[backend]![rw], ...(anchorValue === null ? { anchorMissing: fioProblem } : { fio_passes_gbps: fio[rw] }), note: backend === 'io_uring' ? 'target >= 0.95 of fio' : 'pread/pwrite fallback, QD32 = 32 threads' },
    });
  }
}

const fioMedians = fio.read.length && fio.write.length ? { read: median(fio.read), write: median(fio.write) } : null;
rows.push(await offloadStepRow({ smoke, dir, fio: fioMedians, fioProblem: fioProblem || 'fio measured no bandwidth' }));

console.log(`aio engine vs fio on ${dir} (${fsType}), ${BYTES / MiB} MiB per pass, block 1 MiB, QD ${QD}${smoke ? ' (smoke)' : ''}; CPU ${cpu}; load average ${load0.map((x) => x.toFixed(2)).join(' ')} -> ${load1.map((x) => x.toFixed(2)).join(' ')}`);
console.log(table(rows));
console.log(writeResults(dirname(fileURLToPath(import.meta.url)), rows, { smoke, before }));
