// `ds-io` (DeepSpeed's ds_io and ds_nvme_tune): read and write GB/s of a file or directory with a
// given block size, queue depth and parallelism; --sweep tries a grid and prints the best `aio`
// section. Written as a function returning text and an exit code; the bin prints and exits.
import { DSConfigError, isDSError } from '@ds/core';
import { formatByteSize, parseByteSize } from '@ds/tensor';

import { DEFAULT_GRID, measureIo, sweepIo, type IoMeasure, type IoMeasureOptions, type SweepGrid } from './io-bench.js';

export interface CliResult {
  code: number;
  out: string;
}

export const USAGE = `usage: ds-io PATH [--size 256MiB] [--block-size 1MiB] [--queue-depth 8] [--threads 1]
             [--read] [--write] [--loops 3] [--no-direct] [--single-submit] [--no-overlap-events]
             [--backend auto|io_uring|threads] [--json]
       ds-io PATH --sweep [--size 64MiB] [--block-size LIST] [--queue-depth LIST] [--threads LIST]

  PATH is a directory (a scratch file is written, read and removed) or a file (read only; --write
  overwrites it). Prints read and write GB/s (1e9 B/s, the median of --loops passes) of the async
  I/O engine: O_DIRECT unless --no-direct, io_uring unless refused or --backend threads.

  --sweep measures every combination of the lists (defaults: block sizes 128K,256K,1M,4M; queue
  depths 4,8,16,32,64; threads 1,2) and prints the best one as an "aio" section for ds_config.json
  (best harmonic mean of read and write). Progress goes to stderr while it runs.`;

const VALUE_FLAGS = new Set(['--size', '--block-size', '--queue-depth', '--threads', '--loops', '--backend']);
const BOOL_FLAGS = new Set(['--read', '--write', '--no-direct', '--single-submit', '--no-overlap-events', '--json', '--sweep', '--help', '-h']);

interface Parsed {
  path: string;
  values: Record<string, string>;
  flags: Set<string>;
}

function parse(argv: string[]): Parsed {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (VALUE_FLAGS.has(name)) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new DSConfigError(`ds-io: ${name} needs a value`);
      values[name] = v;
    } else if (BOOL_FLAGS.has(name)) flags.add(name);
    else if (a.startsWith('-')) throw new DSConfigError(`ds-io: unknown option ${a}; see ds-io --help`);
    else positional.push(a);
  }
  if (flags.has('--help') || flags.has('-h')) return { path: '', values, flags };
  if (positional.length !== 1) throw new DSConfigError(`ds-io: give one PATH (got ${positional.length}); see ds-io --help`);
  return { path: positional[0]!, values, flags };
}

const int = (name: string, s: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new DSConfigError(`ds-io: ${name} ${s} is not a positive integer`);
  return n;
};
const list = <T>(s: string | undefined, one: (x: string) => T): T[] | undefined => (s === undefined ? undefined : s.split(',').map((x) => one(x.trim())));

function line(r: IoMeasure): string {
  const gbps = (x: number | null) => (x === null ? '-' : `${x.toFixed(2)} GB/s`);
  return `${r.path}: ${formatByteSize(r.bytes)}, block ${formatByteSize(r.blockSize)}, queue depth ${r.queueDepth}, ${r.threads} thread(s), ${r.backend}${r.direct ? ', O_DIRECT' : ', buffered'}: read ${gbps(r.readGBps)}, write ${gbps(r.writeGBps)}`;
}

export async function main(argv: string[], progress: (line: string) => void = () => {}): Promise<CliResult> {
  try {
    const p = parse(argv);
    if (p.flags.has('--help') || p.flags.has('-h')) return { code: 0, out: USAGE };
    const v = p.values;
    const backend = v['--backend'];
    if (backend !== undefined && backend !== 'auto' && backend !== 'io_uring' && backend !== 'threads') throw new DSConfigError(`ds-io: --backend ${backend}: use auto, io_uring or threads`);
    const base: IoMeasureOptions = {
      path: p.path,
      loops: v['--loops'] ? int('--loops', v['--loops']) : undefined,
      direct: !p.flags.has('--no-direct'),
      singleSubmit: p.flags.has('--single-submit'),
      overlapEvents: !p.flags.has('--no-overlap-events'),
      backend: backend as IoMeasureOptions['backend'],
      onProgress: progress,
      ...(p.flags.has('--read') || p.flags.has('--write') ? { read: p.flags.has('--read'), write: p.flags.has('--write') } : {}),
    };
    if (p.flags.has('--sweep')) {
      const grid: SweepGrid = {
        blockSizes: list(v['--block-size'], (x) => parseByteSize(x, '--block-size')) ?? DEFAULT_GRID.blockSizes,
        queueDepths: list(v['--queue-depth'], (x) => int('--queue-depth', x)) ?? DEFAULT_GRID.queueDepths,
        threads: list(v['--threads'], (x) => int('--threads', x)) ?? DEFAULT_GRID.threads,
      };
      const r = await sweepIo({ ...base, bytes: parseByteSize(v['--size'] ?? '64MiB', '--size'), loops: base.loops ?? 1, grid });
      if (p.flags.has('--json')) return { code: 0, out: JSON.stringify({ runs: r.runs, best: r.best, aio: r.aio }) };
      return { code: 0, out: [`best of ${r.runs.length}: ${line(r.best)}`, 'paste into ds_config.json:', JSON.stringify({ aio: r.aio }, null, 2)].join('\n') };
    }
    const r = await measureIo({
      ...base,
      bytes: v['--size'] ? parseByteSize(v['--size'], '--size') : undefined,
      blockSize: v['--block-size'] ? parseByteSize(v['--block-size'], '--block-size') : undefined,
      queueDepth: v['--queue-depth'] ? int('--queue-depth', v['--queue-depth']) : undefined,
      threads: v['--threads'] ? int('--threads', v['--threads']) : undefined,
    });
    return { code: 0, out: p.flags.has('--json') ? JSON.stringify(r) : line(r) };
  } catch (e) {
    if (isDSError(e)) return { code: 2, out: `${e.message}` };
    throw e;
  }
}
