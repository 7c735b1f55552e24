// launch(): start N local ranks of a script and wait for them, for programs and for the other
// packages' multi-process tests. Same spawn, env and failure handling as `ds`, no CLI parsing.
import { createServer } from 'node:net';
import { cpuCores, localGpuCount, physicalCoreCount, resolveScript, tsLoaderUrl, which, WATCHDOG_URL } from './machine.js';
import { DEEPSPEED_TERM_GRACE_S } from './args.js';
import { DSLaunchError } from './errors.js';
import { planNodeRanks } from './node-plan.js';
import { NodeRun, type RankResult } from './node-run.js';
import { rankLine } from './protocol.js';
import type { Env } from './rank-env.js';

export interface LaunchOptions {
  /** A .ts/.mts (run through tsx), .js/.mjs/.cjs file; relative to `cwd`. */
  script: string;
  args?: readonly string[];
  /** Number of local ranks (default 1). */
  nprocs?: number;
  /** Added to the environment of every rank (over process.env unless inheritEnv is false). */
  env?: Env;
  inheritEnv?: boolean;
  cwd?: string;
  /** Hard limit: past it every rank is stopped and the result lists the ranks still running. */
  timeoutMs?: number;
  /** Milliseconds from SIGTERM to SIGKILL when stopping ranks (default 30000, DeepSpeed's 30 s). */
  graceMs?: number;
  /** Keep each rank's output in the result (default true). */
  captureOutput?: boolean;
  /** Also print each line as `[rank R] line` to this process's stdout/stderr (default false). */
  echo?: boolean;
  /** Default: a free port on 127.0.0.1, so concurrent launches do not collide. */
  masterPort?: number;
  masterAddr?: string;
  /** Pass `--local_rank=N` to the script, as `ds` does (default false here). */
  localRankArg?: boolean;
  /** Pin each rank to its share of cores. */
  bindCoresToRank?: boolean;
  /** Use GPUs: CUDA_VISIBLE_DEVICES=0..nprocs-1 (default: when this machine has GPUs). */
  gpus?: boolean;
  /** Stops every rank when aborted (the result then has stoppedBy = 'SIGTERM'). */
  signal?: AbortSignal;
}

export interface LaunchResult {
  /** 0 when every rank exited 0; else the first failed rank's code (128+signal when killed), 124 on timeout. */
  exitCode: number;
  failedRank: number | null;
  timedOut: boolean;
  /** Ranks still running when the timeout hit. */
  stillRunning: number[];
  stoppedBy: NodeJS.Signals | null;
  ranks: RankResult[];
  durationMs: number;
  /** The master port the ranks were given. */
  masterPort: number;
}

/** A TCP port that was free a moment ago on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const nprocs = options.nprocs ?? 1;
  if (!Number.isInteger(nprocs) || nprocs < 1) throw new DSLaunchError(`launch(): nprocs must be a positive integer, got ${nprocs}.`);
  const cwd = options.cwd ?? process.cwd();
  const baseEnv: Env = { ...(options.inheritEnv === false ? {} : process.env), ...options.env };
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  const masterPort = options.masterPort ?? (await freePort(masterAddr));
  const script = resolveScript(options.script, { module: false, noPython: false, cwd, env: baseEnv });
  const gpus = options.gpus ?? localGpuCount() > 0;
  const launches = planNodeRanks({
    active: new Map([['localhost', Array.from({ length: nprocs }, (_, i) => i)]]),
    nodeRank: 0, masterAddr, masterPort, script, userArgs: options.args ?? [],
    noLocalRank: !options.localRankArg, baseEnv, gpus, cores: cpuCores(),
    bind: { enabled: options.bindCoresToRank ?? false, physicalCores: physicalCoreCount(), tool: which('numactl', baseEnv) ? 'numactl' : 'taskset' },
    nodePath: process.execPath, tsLoader: tsLoaderUrl(), preload: [WATCHDOG_URL],
  });
  const echo = options.echo ?? false;
  const run = new NodeRun({
    ranks: launches, cwd, graceMs: options.graceMs ?? DEEPSPEED_TERM_GRACE_S * 1000, timeoutMs: options.timeoutMs, watchdog: true,
    captureOutput: options.captureOutput ?? true,
    onLine: echo ? (rank, stream, line) => process[stream].write(`${rankLine(rank, line)}\n`) : undefined,
  });
  const onAbort = () => run.stop('SIGTERM');
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await run.done;
    return {
      exitCode: r.exitCode, failedRank: r.failedRank, timedOut: r.timedOut, stillRunning: r.stillRunning,
      stoppedBy: r.stoppedBy, ranks: r.ranks, durationMs: r.durationMs, masterPort,
    };
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}
