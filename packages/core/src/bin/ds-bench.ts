#!/usr/bin/env node
// ds-bench: nccl-tests-style collective benchmark. Run one process per rank under the launcher:
//   ds --num_procs 2 ds-bench allreduce --min 1K --max 256M
// Rank 0 prints size, time, algbw and busbw per size (nccl-tests' definitions) and writes JSON.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { formatByteSize, parseByteSize, type DType } from '@ds/tensor';

import { initDistributed } from '../comm/init.js';
import { resolveCommBackend } from '../engine/initialize.js';
import { readCoreEnv } from '../env.js';
import { discoverPlugins } from '../plugin/discover.js';
import { BENCH_OPS, measure, type BenchOp, type PerfRow } from '../comm/perf.js';
import { isMainModule } from '../main-module.js';

const USAGE = `usage: ds-bench <${BENCH_OPS.join('|')}> [--min 1K] [--max 256M] [--factor 2] [--iters 20] [--warmup 5]
                [--dtype f32|bf16|f16|i32|u8] [--registered] [--backend cpu|mpi|nccl] [--device cpu|sim|cuda]
                [--json ds-bench.json]
Run one process per rank (the \`ds\` launcher sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
--backend picks the comm backend by name (default DS_COMM_BACKEND, else cpu; mpi and nccl come from
their installed packages); --device where the buffers live (default: the backend's device memory,
cuda for nccl, else cpu; sim measures the cpu backend through its staging copies).
algbw = S/t with S the full array; busbw = algbw x 2(n-1)/n (allreduce), (n-1)/n (allgather,
reducescatter, alltoall), 1 (broadcast): nccl-tests' definitions.`;

export interface Args {
  op: BenchOp;
  min: number;
  max: number;
  factor: number;
  iters: number;
  warmup: number;
  dtype: DType;
  registered: boolean;
  /** Comm backend by name; undefined: DS_COMM_BACKEND, else cpu. */
  backend: string | undefined;
  /** Where the buffers live; undefined: the backend's device memory, else cpu. */
  device: string | undefined;
  json: string;
}

/** Flags take `--x=y` and `--x y` (node:util parseArgs); a usage problem throws UsageError ('' for --help). */
export function parseCommand(argv: string[]): Args {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        min: { type: 'string' }, max: { type: 'string' }, factor: { type: 'string' }, iters: { type: 'string' }, warmup: { type: 'string' },
        dtype: { type: 'string' }, json: { type: 'string' }, registered: { type: 'boolean' }, backend: { type: 'string' }, device: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('. ')[0]!);
  }
  const { values: v, positionals } = parsed;
  if (v.help) throw new UsageError('');
  const [op, ...extra] = positionals;
  if (!op) throw new UsageError('missing op');
  if (!BENCH_OPS.includes(op as BenchOp)) throw new UsageError(`unknown op '${op}'`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const args: Args = {
    op: op as BenchOp,
    min: v.min === undefined ? 1024 : parseByteSize(v.min, '--min'),
    max: v.max === undefined ? 256 * 1024 * 1024 : parseByteSize(v.max, '--max'),
    factor: v.factor === undefined ? 2 : Number(v.factor),
    iters: v.iters === undefined ? 20 : Number(v.iters),
    warmup: v.warmup === undefined ? 5 : Number(v.warmup),
    dtype: (v.dtype ?? 'f32') as DType,
    registered: v.registered ?? false,
    backend: v.backend,
    device: v.device,
    json: v.json ?? 'ds-bench.json',
  };
  if (!(args.factor > 1) || !(args.min > 0) || args.max < args.min || !(args.iters >= 1) || !(args.warmup >= 0)) throw new UsageError('need 0 < min <= max, factor > 1, iters >= 1, warmup >= 0');
  if (!['f32', 'bf16', 'f16', 'i32', 'u8'].includes(args.dtype)) throw new UsageError(`unknown dtype '${args.dtype}'`);
  if (args.device !== undefined && !['cpu', 'sim', 'cuda'].includes(args.device)) throw new UsageError(`unknown device '${args.device}' (cpu, sim or cuda)`);
  if (args.registered && args.device !== undefined && args.device !== 'cpu') throw new UsageError('--registered buffers are host shared memory; it cannot be combined with --device ' + args.device);
  return args;
}

export class UsageError extends Error {}

async function main(): Promise<void> {
  const args = parseCommand(process.argv.slice(2));
  const env = readCoreEnv();
  const name = args.backend ?? env.commBackend ?? 'cpu';
  // The installed backend packages register through their plugins, as ds-config finds them.
  const { registry } = await discoverPlugins();
  const backend = await resolveCommBackend(registry, name, env);
  const device = args.device ?? backend.deviceMemory?.[0] ?? 'cpu';
  const d = await initDistributed({ backend });
  const rows: PerfRow[] = [];
  const say = (line: string): void => void (d.rank === 0 && console.log(line));
  say(`# ds-bench ${args.op}: ${d.size} ranks, backend ${name}, buffers on ${device}, dtype ${args.dtype}${args.registered ? ', registered buffers' : ''}, ${args.iters} iters after ${args.warmup} warm-up`);
  say(`${'size'.padStart(12)} ${'count'.padStart(12)} ${'time(us)'.padStart(12)} ${'algbw(GB/s)'.padStart(12)} ${'busbw(GB/s)'.padStart(12)}`);
  for (let bytes = args.min; bytes <= args.max; bytes = Math.ceil(bytes * args.factor)) {
    const row = await measure(d.world, args.op, bytes, { dtype: args.dtype, iters: args.iters, warmup: args.warmup, registered: args.registered, device });
    rows.push(row);
    say(`${formatByteSize(row.bytes).padStart(12)} ${String(row.elements).padStart(12)} ${row.timeUs.toFixed(1).padStart(12)} ${row.algbw.toFixed(3).padStart(12)} ${row.busbw.toFixed(3).padStart(12)}`);
  }
  if (d.rank === 0) {
    const peak = rows.reduce((m, r) => Math.max(m, r.busbw), 0);
    say(`# peak busbw: ${peak.toFixed(3)} GB/s`);
    writeFileSync(args.json, JSON.stringify({ op: args.op, ranks: d.size, backend: name, device, dtype: args.dtype, registered: args.registered, iters: args.iters, rows }, null, 2) + '\n');
    say(`# wrote ${args.json}`);
  }
  await d.destroy();
}

// Run only when this file is the program, not when imported (tests import parseCommand).
if (isMainModule(import.meta.url)) main().catch((err: unknown) => {
  if (err instanceof UsageError) {
    if (!err.message) {
      console.log(USAGE);
      process.exit(0);
    }
    console.error(`ds-bench: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(`ds-bench: ${(err as Error).message}`);
  process.exit(1);
});
