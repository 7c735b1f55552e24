// The ranks one node starts: for node `nodeRank` of the world, each rank's command and environment.
// Used by `ds` for a local run, by the per-node agent on each remote node, and by launch().
import { DSLaunchError } from './errors.js';
import type { ActiveResources } from './hostfile.js';
import type { RankLaunch } from './node-run.js';
import {
  bindPrefix, buildRankCommand, buildRankEnv, coresForRank, parseCoreList, threadsPerRank,
  type Env, type ResolvedScript,
} from './rank-env.js';
import { rankTable } from './world.js';

export interface NodePlanOptions {
  active: ActiveResources;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  script: ResolvedScript;
  userArgs: readonly string[];
  noLocalRank: boolean;
  baseEnv: Env;
  /** Whether this node has GPUs: then CUDA_VISIBLE_DEVICES lists this node's slots. */
  gpus: boolean;
  /** Logical cores to share out for threads per rank. */
  cores: number;
  bind: { enabled: boolean; coreList?: string; physicalCores: number; tool: 'numactl' | 'taskset' };
  nodePath: string;
  tsLoader: string;
  preload: readonly string[];
}

export function planNodeRanks(o: NodePlanOptions): RankLaunch[] {
  const table = rankTable(o.active);
  const host = [...o.active.keys()][o.nodeRank];
  if (host === undefined) {
    throw new DSLaunchError(`node rank ${o.nodeRank} is outside the world of ${o.active.size} node(s).`);
  }
  const mine = table.filter((r) => r.nodeRank === o.nodeRank);
  const slots = o.active.get(host)!;
  let bindCores: number[] | null = null;
  if (o.bind.enabled) {
    if ((o.baseEnv.KMP_AFFINITY ?? '') !== '') {
      throw new DSLaunchError('KMP_AFFINITY is set and conflicts with --bind_cores_to_rank; unset KMP_AFFINITY first.');
    }
    bindCores = o.bind.coreList !== undefined
      ? parseCoreList(o.bind.coreList)
      : Array.from({ length: o.bind.physicalCores }, (_, i) => i);
  }
  return mine.map((spec) => {
    const cores = bindCores ? coresForRank(bindCores, spec.localSize, spec.localRank) : null;
    const threads = cores ? cores.length : threadsPerRank(o.baseEnv, o.cores, spec.localSize);
    const env = buildRankEnv(o.baseEnv, spec, {
      masterAddr: o.masterAddr,
      masterPort: o.masterPort,
      visibleDevices: o.gpus ? slots : null,
      threads,
    });
    const argv = buildRankCommand({
      script: o.script,
      userArgs: o.userArgs,
      localRank: spec.localRank,
      noLocalRank: o.noLocalRank,
      nodePath: o.nodePath,
      tsLoader: o.tsLoader,
      preload: o.preload,
      bindPrefix: cores ? bindPrefix(o.bind.tool, cores) : [],
    });
    return { spec, argv, env };
  });
}

/** launch.py's per-rank log name: `<dir>/<YYYYmmddHHMMSS>_rank<R>.log`, local time. */
export function rankLogPath(dir: string, stamp: Date, rank: number): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const ts = `${stamp.getFullYear()}${p(stamp.getMonth() + 1)}${p(stamp.getDate())}${p(stamp.getHours())}${p(stamp.getMinutes())}${p(stamp.getSeconds())}`;
  return `${dir.replace(/\/+$/, '')}/${ts}_rank${rank}.log`;
}
