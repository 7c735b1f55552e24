// What ds-io and the bench measure (DeepSpeed's ds_io / ds_nvme_tune): read and write GB/s of one
// file with a given block size, queue depth and parallelism, and a sweep over a grid that returns the
// best `aio` section. Each pass moves the whole buffer in one engine request, so the engine's own
// splitting into block_size chunks over its threads is what is measured.
import { existsSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

import { DSConfigError } from '@ds/core';

import type { AioConfig } from './aio-config.js';
import { AioEngine, allocAligned } from './engine.js';
import type { AioBackendChoice } from './env.js';

export interface IoMeasureOptions {
  /** A file, or a directory in which a scratch file is made and removed. */
  path: string;
  /** Bytes per pass (default 256 MiB; a file measured read-only uses its size, at most this). A file is written only when `write` is true. */
  bytes?: number;
  blockSize?: number;
  queueDepth?: number;
  threads?: number;
  singleSubmit?: boolean;
  overlapEvents?: boolean;
  backend?: AioBackendChoice;
  /** Default true: aligned transfers with O_DIRECT. */
  direct?: boolean;
  /** Passes per direction; the median is reported (default 3). */
  loops?: number;
  read?: boolean;
  write?: boolean;
  onProgress?: (line: string) => void;
}

export interface IoMeasure {
  path: string;
  bytes: number;
  backend: string;
  direct: boolean;
  blockSize: number;
  queueDepth: number;
  threads: number;
  /** Median GB/s (1e9 bytes per second) of the passes, null when the direction was not measured. */
  readGBps: number | null;
  writeGBps: number | null;
}

const MiB = 1 << 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function measureIo(o: IoMeasureOptions): Promise<IoMeasure> {
  if (!existsSync(o.path)) throw new DSConfigError(`ds-io: ${o.path} does not exist; give a file to read or a directory to test in`);
  const isDir = statSync(o.path).isDirectory();
  const wantWrite = o.write ?? isDir;
  const wantRead = o.read ?? true;
  const file = isDir ? join(o.path, `ds-io-${process.pid}.tmp`) : o.path;
  let bytes = o.bytes ?? 256 * MiB;
  if (!isDir && !wantWrite) bytes = Math.min(bytes, statSync(file).size - (statSync(file).size % 4096));
  if (bytes < 4096) throw new DSConfigError(`ds-io: ${bytes} B is too small to measure; use at least 4096 B (--size)`);
  const engine = new AioEngine({ blockSize: o.blockSize, queueDepth: o.queueDepth, threads: o.threads, singleSubmit: o.singleSubmit, overlapEvents: o.overlapEvents, backend: o.backend });
  const loops = o.loops ?? 3;
  const buf = allocAligned(bytes);
  for (let i = 0; i < buf.length; i += 4096) buf[i] = (i / 4096) & 0xff;
  const say = o.onProgress ?? (() => {});
  const opts = engine.options;
  const label = `block ${opts.blockSize / 1024} KiB, qd ${opts.queueDepth}, ${opts.threads} thread(s), ${engine.backend}`;
  try {
    const f = engine.open(file, { write: wantWrite, create: isDir, direct: o.direct ?? true });
    // Allocated up front, as the nvme tier does (and fio's layout step): writes overwrite blocks
    // instead of extending the file, which file systems serialise under O_DIRECT.
    if (wantWrite) engine.reserve(f, bytes);
    // Then written once, untimed, as fio lays out its file: a timed write overwrites written blocks
    // (the tier's steady state) instead of converting fresh unwritten extents.
    if (wantWrite) {
      say(`ds-io: laying out ${(bytes / MiB).toFixed(0)} MiB (untimed)`);
      await engine.write(f, buf, 0).wait();
    }
    const pass = async (kind: 'read' | 'write'): Promise<number> => {
      const rates: number[] = [];
      for (let k = 0; k < loops; k++) {
        const t0 = process.hrtime.bigint();
        await (kind === 'read' ? engine.read(f, buf, 0) : engine.write(f, buf, 0)).wait();
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        rates.push(bytes / s / 1e9);
        say(`ds-io: ${kind} ${k + 1}/${loops}: ${(bytes / MiB).toFixed(0)} MiB in ${s.toFixed(3)} s = ${rates.at(-1)!.toFixed(2)} GB/s (${label})`);
      }
      return median(rates);
    };
    const writeGBps = wantWrite ? await pass('write') : null;
    const readGBps = wantRead ? await pass('read') : null;
    const direct = f.direct;
    engine.closeFile(f);
    return { path: file, bytes, backend: engine.backend, direct, blockSize: opts.blockSize, queueDepth: opts.queueDepth, threads: opts.threads, readGBps, writeGBps };
  } finally {
    engine.close();
    if (isDir && existsSync(file)) unlinkSync(file);
  }
}

export interface SweepGrid {
  blockSizes: number[];
  queueDepths: number[];
  threads: number[];
}

export const DEFAULT_GRID: SweepGrid = { blockSizes: [128 * 1024, 256 * 1024, MiB, 4 * MiB], queueDepths: [4, 8, 16, 32, 64], threads: [1, 2] };

export interface SweepResult {
  runs: IoMeasure[];
  best: IoMeasure;
  /** The `aio` section of the best run, to paste into ds_config.json. */
  aio: AioConfig;
}

/** Tries every grid point (write then read) and picks the one with the best harmonic mean of read and write GB/s. */
export async function sweepIo(o: IoMeasureOptions & { grid?: SweepGrid }): Promise<SweepResult> {
  const grid = o.grid ?? DEFAULT_GRID;
  const points = grid.blockSizes.flatMap((b) => grid.queueDepths.flatMap((q) => grid.threads.map((t) => [b, q, t] as const)));
  const say = o.onProgress ?? (() => {});
  const runs: IoMeasure[] = [];
  for (const [i, [blockSize, queueDepth, threads]] of points.entries()) {
    const r = await measureIo({ ...o, blockSize, queueDepth, threads, onProgress: undefined });
    runs.push(r);
    say(`ds-io sweep ${i + 1}/${points.length}: block ${blockSize / 1024} KiB, qd ${queueDepth}, ${threads} thread(s): read ${r.readGBps?.toFixed(2) ?? '-'} GB/s, write ${r.writeGBps?.toFixed(2) ?? '-'} GB/s`);
  }
  const score = (r: IoMeasure) => {
    const xs = [r.readGBps, r.writeGBps].filter((x): x is number => x !== null);
    return xs.length / xs.reduce((a, x) => a + 1 / x, 0);
  };
  const best = runs.reduce((a, r) => (score(r) > score(a) ? r : a));
  return {
    runs,
    best,
    aio: { block_size: best.blockSize, queue_depth: best.queueDepth, intra_op_parallelism: best.threads, single_submit: o.singleSubmit ?? false, overlap_events: o.overlapEvents ?? true, use_gds: false },
  };
}
