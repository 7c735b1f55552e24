// What each rank is started with: its environment (launch.py's variables plus threads per rank)
// and its command line. Pure functions: the caller supplies the base environment and machine facts.
import { DSLaunchError } from './errors.js';
import type { RankSpec } from './world.js';

export type Env = Record<string, string | undefined>;

export interface RankEnvOptions {
  masterAddr: string;
  masterPort: number;
  /** GPU ids of this node's ranks; every local rank sees all of them (as in launch.py). null: cpu. */
  visibleDevices: number[] | null;
  /** Threads per rank to set, or null to leave DS_NUM_THREADS/OMP_NUM_THREADS as they are. */
  threads: number | null;
}

/** The environment of one rank: `base` plus the rendezvous and placement variables. */
export function buildRankEnv(base: Env, spec: RankSpec, opts: RankEnvOptions): Env {
  const env: Env = { ...base };
  env.RANK = String(spec.rank);
  env.LOCAL_RANK = String(spec.localRank);
  env.WORLD_SIZE = String(spec.worldSize);
  env.LOCAL_SIZE = String(spec.localSize);
  env.CROSS_RANK = String(spec.nodeRank);
  env.CROSS_SIZE = String(spec.nnodes);
  env.MASTER_ADDR = opts.masterAddr;
  env.MASTER_PORT = String(opts.masterPort);
  if (opts.visibleDevices) env.CUDA_VISIBLE_DEVICES = opts.visibleDevices.join(',');
  if (opts.threads !== null) {
    env.DS_NUM_THREADS = String(opts.threads);
    env.OMP_NUM_THREADS = String(opts.threads);
  }
  return env;
}

/**
 * Threads per rank: the user's DS_NUM_THREADS/OMP_NUM_THREADS win (null: leave them); else the
 * cores shared out evenly, at least one each.
 */
export function threadsPerRank(base: Env, cores: number, localSize: number): number | null {
  if ((base.DS_NUM_THREADS ?? '') !== '' || (base.OMP_NUM_THREADS ?? '') !== '') return null;
  return Math.max(1, Math.floor(cores / Math.max(1, localSize)));
}

/** Parses a core list such as "0,2-4,6" (ascending, non-overlapping, as DeepSpeed requires). */
export function parseCoreList(text: string): number[] {
  const out: number[] = [];
  let last = -1;
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) {
      throw new DSLaunchError(`--bind_core_list '${text}': '${part}' is neither a core number nor a range like 2-5.`);
    }
    const start = Number(m[1]);
    const end = m[2] === undefined ? start : Number(m[2]);
    if (start > end) throw new DSLaunchError(`--bind_core_list '${text}': range '${part}' ends before it starts.`);
    if (start <= last) {
      throw new DSLaunchError(`--bind_core_list '${text}': ranges must be ascending and must not overlap ('${part}').`);
    }
    for (let c = start; c <= end; c++) out.push(c);
    last = end;
  }
  return out;
}

/** The cores of one local rank when binding: an equal share of `cores`, in order. */
export function coresForRank(cores: readonly number[], localSize: number, localRank: number): number[] {
  const per = Math.floor(cores.length / localSize);
  if (per < 1) {
    throw new DSLaunchError(
      `--bind_cores_to_rank: ${cores.length} core(s) cannot give each of ${localSize} local ranks at least one; ` +
        'start fewer ranks or pass a longer --bind_core_list.',
    );
  }
  return cores.slice(per * localRank, per * (localRank + 1));
}

/** How a script is started. `node`: a JS file; `ts`: through the tsx loader; `exec`: an executable. */
export interface ResolvedScript {
  kind: 'node' | 'ts' | 'exec';
  path: string;
}

export interface RankCommandOptions {
  script: ResolvedScript;
  userArgs: readonly string[];
  localRank: number;
  noLocalRank: boolean;
  /** The node binary (process.execPath). */
  nodePath: string;
  /** URL of the TypeScript loader module given to `node --import` for `.ts` scripts. */
  tsLoader: string;
  /** Modules to preload in every node rank (`--import`), e.g. the orphan watchdog. */
  preload: readonly string[];
  /** Core pinning prefix, e.g. ['taskset', '-c', '0-3'], or []. */
  bindPrefix: readonly string[];
}

/** The argv of one rank: [binder...] node [--import ...] script [--local_rank=N] args... */
export function buildRankCommand(o: RankCommandOptions): string[] {
  const cmd: string[] = [...o.bindPrefix];
  if (o.script.kind === 'exec') cmd.push(o.script.path);
  else {
    cmd.push(o.nodePath);
    for (const m of o.preload) cmd.push('--import', m);
    if (o.script.kind === 'ts') cmd.push('--import', o.tsLoader);
    cmd.push(o.script.path);
  }
  if (!o.noLocalRank) cmd.push(`--local_rank=${o.localRank}`);
  cmd.push(...o.userArgs);
  return cmd;
}

/** The core-pinning prefix: numactl when present (as DeepSpeed), else taskset from util-linux. */
export function bindPrefix(tool: 'numactl' | 'taskset', cores: readonly number[]): string[] {
  const list = cores.join(',');
  return tool === 'numactl' ? ['numactl', '-C', list] : ['taskset', '-c', list];
}
