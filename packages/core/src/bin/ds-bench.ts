#!/usr/bin/env node
// ds-bench: nccl-tests-style collective benchmark. Run one process per rank under the launcher:
//   ds --num_procs 2 ds-bench allreduce --min 1K --max 256M
// Rank 0 prints size, time, algbw and busbw per size (nccl-tests' definitions) and writes JSON.
import { writeFileSync } from 'node:fs';

import { formatByteSize, parseByteSize, type DType } from '@ds/tensor';

import { initDistributed } from '../comm/init.js';
import { BENCH_OPS, measure, type BenchOp, type PerfRow } from '../comm/perf.js';

const USAGE = `usage: ds-bench <${BENCH_OPS.join('|')}> [--min 1K] [--max 256M] [--factor 2] [--iters 20] [--warmup 5]
                [--dtype f32|bf16|f16|i32|u8] [--registered] [--json ds-bench.json]
Run one process per rank (the \`ds\` launcher sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
algbw = S/t with S the full array; busbw = algbw x 2(n-1)/n (allreduce), (n-1)/n (allgather,
reducescatter, alltoall), 1 (broadcast): nccl-tests' definitions.`;

interface Args {
  op: BenchOp;
  min: number;
  max: number;
  factor: number;
  iters: number;
  warmup: number;
  dtype: DType;
  registered: boolean;
  json: string;
}

function parseArgs(argv: string[]): Args {
  const [op, ...rest] = argv;
  if (op === '--help' || op === '-h') throw new UsageError('');
  if (!op) throw new UsageError('missing op');
  if (!BENCH_OPS.includes(op as BenchOp)) throw new UsageError(`unknown op '${op}'`);
  const args: Args = { op: op as BenchOp, min: 1024, max: 256 * 1024 * 1024, factor: 2, iters: 20, warmup: 5, dtype: 'f32', registered: false, json: 'ds-bench.json' };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    const value = (): string => {
      const v = rest[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--min': args.min = parseByteSize(value(), '--min'); break;
      case '--max': args.max = parseByteSize(value(), '--max'); break;
      case '--factor': args.factor = Number(value()); break;
      case '--iters': args.iters = Number(value()); break;
      case '--warmup': args.warmup = Number(value()); break;
      case '--dtype': args.dtype = value() as DType; break;
      case '--json': args.json = value(); break;
      case '--registered': args.registered = true; break;
      default: throw new UsageError(`unknown option '${flag}'`);
    }
  }
  if (!(args.factor > 1) || !(args.min > 0) || args.max < args.min || !(args.iters >= 1) || !(args.warmup >= 0)) throw new UsageError('need 0 < min <= max, factor > 1, iters >= 1, warmup >= 0');
  if (!['f32', 'bf16', 'f16', 'i32', 'u8'].includes(args.dtype)) throw new UsageError(`unknown dtype '${args.dtype}'`);
  return args;
}

class UsageError extends Error {}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const d = await initDistributed();
  const rows: PerfRow[] = [];
  const say = (line: string): void => void (d.rank === 0 && console.log(line));
  say(`# ds-bench ${args.op}: ${d.size} ranks, dtype ${args.dtype}${args.registered ? ', registered buffers' : ''}, ${args.iters} iters after ${args.warmup} warm-up`);
  say(`${'size'.padStart(12)} ${'count'.padStart(12)} ${'time(us)'.padStart(12)} ${'algbw(GB/s)'.padStart(12)} ${'busbw(GB/s)'.padStart(12)}`);
  for (let bytes = args.min; bytes <= args.max; bytes = Math.ceil(bytes * args.factor)) {
    const row = await measure(d.world, args.op, bytes, { dtype: args.dtype, iters: args.iters, warmup: args.warmup, registered: args.registered });
    rows.push(row);
    say(`${formatByteSize(row.bytes).padStart(12)} ${String(row.elements).padStart(12)} ${row.timeUs.toFixed(1).padStart(12)} ${row.algbw.toFixed(3).padStart(12)} ${row.busbw.toFixed(3).padStart(12)}`);
  }
  if (d.rank === 0) {
    const peak = rows.reduce((m, r) => Math.max(m, r.busbw), 0);
    say(`# peak busbw: ${peak.toFixed(3)} GB/s`);
    writeFileSync(args.json, JSON.stringify({ op: args.op, ranks: d.size, dtype: args.dtype, registered: args.registered, iters: args.iters, rows }, null, 2) + '\n');
    say(`# wrote ${args.json}`);
  }
  await d.destroy();
}

main().catch((err: unknown) => {
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
