// From flags and hostfile to the world to start: which hosts, which slots on each, which global
// rank each slot gets, and whether this is a multi-node launch. Follows runner.py's main(); the
// machine facts (GPU count, default cpu ranks) and the environment are passed in, so this is pure.
import type { DsArgs } from './args.js';
import { DSLaunchError } from './errors.js';
import { parseInclusionExclusion, type ActiveResources, type ResourcePool } from './hostfile.js';

export interface WorldInputs {
  args: DsArgs;
  /** The parsed hostfile, or null when it does not exist. */
  pool: ResourcePool | null;
  env: Readonly<Record<string, string | undefined>>;
  /** GPUs on this host (0 on a cpu-only host). */
  localGpuCount: number;
  /** Ranks to start on a cpu-only host when nothing says how many (the NUMA node count). */
  defaultCpuRanks: number;
}

export interface WorldPlan {
  active: ActiveResources;
  /** '' when it must be asked from the first host (`hostname -I` over ssh). */
  masterAddr: string;
  multiNode: boolean;
  /** Whether the hosts came from a hostfile (else: this machine alone). */
  fromHostfile: boolean;
  /** Environment variables to drop before starting ranks (DeepSpeed consumes CUDA_VISIBLE_DEVICES). */
  dropEnv: string[];
  /** Lines to show the user (what was detected or ignored). */
  notes: string[];
}

/** Resolves the world like DeepSpeed's runner. Throws DSLaunchError for every rejected combination. */
export function planWorld(inputs: WorldInputs): WorldPlan {
  const { args, env, localGpuCount } = inputs;
  let include = args.include;
  const notes: string[] = [];
  const dropEnv: string[] = [];
  let pool = inputs.pool;

  // Without a hostfile, CUDA_VISIBLE_DEVICES picks the local GPUs unless a flag already does.
  const visible = env.CUDA_VISIBLE_DEVICES ?? '';
  if (!pool && visible !== '' && localGpuCount > 0) {
    const detected = `Detected CUDA_VISIBLE_DEVICES=${visible}`;
    if (include !== '' || args.exclude !== '' || args.numNodes > 1 || args.numGpus > 0) {
      notes.push(`${detected} but ignoring it because --include/--exclude/--num_gpus/--num_nodes was given.`);
    } else {
      include = `localhost:${visible}`;
      notes.push(`${detected}: setting --include=${include}`);
    }
    dropEnv.push('CUDA_VISIBLE_DEVICES');
  }

  if ((args.numNodes >= 0 || args.numGpus >= 0) && (include !== '' || args.exclude !== '')) {
    throw new DSLaunchError(
      'Cannot combine --num_nodes/--num_gpus with --include/--exclude: pick the resources with one or the other.',
    );
  }
  if (args.numGpus === 0) throw new DSLaunchError('--num_gpus 0 would start no rank; pass 1 or more.');

  let masterAddr = args.masterAddr;
  const fromHostfile = pool !== null;
  if (!pool) {
    const slots = localGpuCount > 0 ? localGpuCount : Math.max(1, inputs.defaultCpuRanks);
    pool = new Map([['localhost', slots]]);
    masterAddr = '127.0.0.1';
    if (args.numNodes > 1) {
      throw new DSLaunchError(
        `--num_nodes ${args.numNodes} but there is no hostfile (looked for ${args.hostfile}), so only this node ` +
          'is available. Pass -H/--hostfile with one line per node.',
      );
    }
  }

  let active = parseInclusionExclusion(pool, include, args.exclude);

  if (args.numNodes > 0) active = new Map([...active].slice(0, args.numNodes));
  if (args.numGpus > 0) {
    if (!fromHostfile && localGpuCount > 0 && args.numGpus > localGpuCount) {
      throw new DSLaunchError(
        `--num_gpus ${args.numGpus} but this host has ${localGpuCount} GPU(s); pass at most ${localGpuCount}.`,
      );
    }
    const ids = Array.from({ length: args.numGpus }, (_, i) => i);
    active = new Map([...active.keys()].map((h) => [h, [...ids]]));
  }
  if (active.size === 0) {
    throw new DSLaunchError('No resources left after --include/--exclude/--num_nodes; nothing to start.');
  }

  if (args.noSsh && !(args.nodeRank >= 0 && args.nodeRank < active.size)) {
    throw new DSLaunchError(
      `--no_ssh starts this node only and needs --node_rank in 0..${active.size - 1}; got ${args.nodeRank}.`,
    );
  }
  const multiNode = (args.forceMulti || active.size > 1) && !args.noSsh && fromHostfile;
  if (args.forceMulti && !fromHostfile) {
    notes.push('--force_multi ignored: there is no hostfile, so the run is local.');
  }
  return { active, masterAddr, multiNode, fromHostfile, dropEnv, notes };
}

/** One rank's place in the world. */
export interface RankSpec {
  rank: number;
  localRank: number;
  nodeRank: number;
  host: string;
  /** The slot (GPU id, or cpu rank index) on its host. */
  slot: number;
  worldSize: number;
  localSize: number;
  nnodes: number;
}

/** Global ranks in host order, slot order within a host (launch.py's global_rank_mapping). */
export function rankTable(active: ActiveResources): RankSpec[] {
  const worldSize = [...active.values()].reduce((n, s) => n + s.length, 0);
  const out: RankSpec[] = [];
  let nodeRank = 0;
  for (const [host, slots] of active) {
    slots.forEach((slot, localRank) => {
      out.push({ rank: out.length, localRank, nodeRank, host, slot, worldSize, localSize: slots.length, nnodes: active.size });
    });
    nodeRank++;
  }
  return out;
}
