// Multi-node commands, built before they are run (so tests can read them): the per-node agent's
// argv, the remote shell line, and the ssh / pdsh / srun / mpirun command lines around it.
import type { DsArgs } from './args.js';
import { shellQuote, shellSplit } from './args.js';
import { DSLaunchError } from './errors.js';
import type { ActiveResources } from './hostfile.js';
import type { Env } from './rank-env.js';

/** Variables exported to every node (DeepSpeed's list, plus the ones our ranks read). */
export const EXPORT_PREFIXES = ['NCCL', 'PYTHON', 'MV2', 'UCX', 'MLFLOW', 'DS_', 'NODE_OPTIONS', 'NODE_PATH', 'OMP_NUM_THREADS'];

/** `.deepspeed_env`: `KEY=VALUE` lines (split on the first '='); blank lines and '#' comments skipped. */
export function parseDsEnvFile(text: string, path: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) {
      throw new DSLaunchError(`${path} line ${i + 1}: '${line}' is not KEY=VALUE. Fix or remove the line.`);
    }
    out.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  });
  return out;
}

/** The variables every node gets: matching ones from `env`, then each env file in order (later wins). */
export function collectExports(env: Env, envFiles: readonly Map<string, string>[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && EXPORT_PREFIXES.some((p) => k.startsWith(p))) out.set(k, v.trim());
  }
  for (const file of envFiles) for (const [k, v] of file) out.set(k, v);
  return out;
}

export interface AgentArgvOptions {
  /** How to start the agent: [node, agent.js], or [node, --import, tsx, agent.ts] from sources. */
  agent: readonly string[];
  /** Encoded world info, or null for --from_scheduler_env (srun/mpirun give each process its rank). */
  worldInfo: string | null;
  nodeRank: number | '%n';
  masterAddr: string;
  masterPort: number;
  runId: string;
  graceMs: number;
  /** The agent stops its ranks when its stdin closes (the ssh connection dropped). */
  watchStdin: boolean;
  args: DsArgs;
  savePid?: number;
}

/** The per-node agent's command line (src/bin/agent.ts reads it back with parseAgentArgs). */
export function buildAgentArgv(o: AgentArgvOptions): string[] {
  const a = o.args;
  const argv = [...o.agent];
  if (o.worldInfo === null) argv.push('--from_scheduler_env');
  else argv.push(`--world_info=${o.worldInfo}`, `--node_rank=${o.nodeRank}`);
  argv.push(`--master_addr=${o.masterAddr}`, `--master_port=${o.masterPort}`, `--run_id=${o.runId}`, `--grace_ms=${o.graceMs}`);
  if (o.watchStdin) argv.push('--watch_stdin');
  if (a.module) argv.push('--module');
  if (a.noPython) argv.push('--no_python');
  if (a.noLocalRank) argv.push('--no_local_rank');
  if (a.enableEachRankLog !== undefined) argv.push(`--enable_each_rank_log=${a.enableEachRankLog}`);
  if (a.bindCoresToRank) argv.push('--bind_cores_to_rank');
  if (a.bindCoreList !== undefined) argv.push(`--bind_core_list=${a.bindCoreList}`);
  if (o.savePid !== undefined) argv.push(`--save_pid=${o.savePid}`);
  argv.push('--', a.userScript, ...a.userArgs);
  return argv;
}

/** The line the remote shell runs: cd, exports, then exec the agent (so it owns the session). */
export function buildRemoteShellCommand(cwd: string, exports: ReadonlyMap<string, string>, argv: readonly string[]): string {
  const parts = [`cd ${shellQuote(cwd)}`];
  for (const [k, v] of exports) parts.push(`export ${k}=${shellQuote(v)}`);
  // %n is pdsh's node-rank placeholder and must reach pdsh unquoted.
  parts.push(`exec ${argv.map((w) => (w.endsWith('=%n') ? w : shellQuote(w))).join(' ')}`);
  return parts.join(' && ');
}

/** The ssh options of a run: --launcher_args, then -p for --ssh_port. */
export function sshOptions(args: DsArgs): string[] {
  const opts = shellSplit(args.launcherArgs);
  if (args.sshPort !== undefined) opts.push('-p', String(args.sshPort));
  return opts;
}

/** DeepSpeed's reachability pre-check: `ssh -o PasswordAuthentication=no <host> hostname`. */
export function buildSshCheckCommand(host: string, sshOpts: readonly string[]): string[] {
  return ['ssh', '-o', 'PasswordAuthentication=no', ...sshOpts, host, 'hostname'];
}

/** Asks the first host for its address (`hostname -I`) when --master_addr is not given. */
export function buildMasterAddrCommand(host: string, sshOpts: readonly string[]): string[] {
  return ['ssh', '-o', 'PasswordAuthentication=no', ...sshOpts, host, 'hostname -I'];
}

export function buildSshCommand(host: string, sshOpts: readonly string[], remote: string): string[] {
  return ['ssh', ...sshOpts, host, remote];
}

export const PDSH_MAX_FAN_OUT = 1024;

export interface PdshCommand {
  argv: string[];
  /** Variables pdsh itself reads. */
  env: Record<string, string>;
  /** Stops the agents of this run on every host (each then stops its ranks). */
  killArgv: string[];
}

export function buildPdshCommand(hosts: readonly string[], args: DsArgs, remote: string, runId: string, env: Env): PdshCommand {
  const base = ['pdsh', '-S', '-f', String(PDSH_MAX_FAN_OUT), '-w', hosts.join(','), ...shellSplit(args.launcherArgs)];
  const pdshEnv: Record<string, string> = { PDSH_RCMD_TYPE: 'ssh' };
  if (args.sshPort !== undefined) pdshEnv.PDSH_SSH_ARGS_APPEND = `${env.PDSH_SSH_ARGS_APPEND ?? ''} -p ${args.sshPort}`.trim();
  return {
    argv: [...base, remote],
    env: pdshEnv,
    killArgv: [...base, `pkill -TERM -f -- ${shellQuote(`--run_id=${runId}`)}`],
  };
}

function rejectFilters(name: string, args: DsArgs): void {
  if (args.include !== '' || args.exclude !== '') {
    throw new DSLaunchError(`--launcher ${name} does not support --include/--exclude; list the nodes in the hostfile instead.`);
  }
  if (args.numNodes !== -1 || args.numGpus !== -1) {
    throw new DSLaunchError(`--launcher ${name} does not support --num_nodes/--num_gpus; the hostfile's slots decide.`);
  }
}

/** `mpirun` for Open MPI: every slot of the hostfile, the agent in scheduler mode on each. */
export function buildOpenMpiCommand(active: ActiveResources, args: DsArgs, exports: ReadonlyMap<string, string>, agentArgv: readonly string[]): string[] {
  rejectFilters('openmpi', args);
  const total = [...active.values()].reduce((n, s) => n + s.length, 0);
  const extra = shellSplit(args.launcherArgs);
  const hasTcpIf = extra.some((w, i) => (w === '-mca' || w === '--mca') && extra[i + 1] === 'btl_tcp_if_include');
  const cmd = ['mpirun', '-n', String(total), '-hostfile', args.hostfile, '--mca', 'btl', '^openib'];
  if (!hasTcpIf) cmd.push('--mca', 'btl_tcp_if_include', 'eth0');
  cmd.push(...extra);
  const all = new Map([['UCX_TLS', 'tcp'], ...exports]);
  for (const [k, v] of all) cmd.push('-x', `${k}=${v}`);
  return [...cmd, ...agentArgv];
}

/**
 * `srun`: the active hosts as --nodelist with the same number of tasks on each (srun cannot give
 * hosts different counts or pick GPU ids per host), the agent in scheduler mode on each task.
 */
export function buildSlurmCommand(active: ActiveResources, args: DsArgs, exports: ReadonlyMap<string, string>, agentArgv: readonly string[]): string[] {
  const counts = new Set([...active.values()].map((s) => s.length));
  if (counts.size !== 1) {
    throw new DSLaunchError(
      `--launcher slurm needs the same number of ranks on every node; got ${[...active].map(([h, s]) => `${h}:${s.length}`).join(', ')}.`,
    );
  }
  const perNode = [...counts][0]!;
  const total = perNode * active.size;
  for (const [k, v] of exports) {
    if (v.includes(',')) throw new DSLaunchError(`--launcher slurm: exported ${k}='${v}' contains ',', which srun --export cannot carry.`);
  }
  const exportArg = ['--export=ALL', ...[...exports].map(([k, v]) => `${k}=${v}`)].join(',');
  return [
    'srun', '-n', String(total), `--nodes=${active.size}`, `--ntasks-per-node=${perNode}`,
    `--nodelist=${[...active.keys()].join(',')}`, '--kill-on-bad-exit=1',
    ...shellSplit(args.launcherArgs), exportArg, ...agentArgv,
  ];
}

/**
 * A rank's place from the scheduler's variables (Open MPI, or Slurm), for the agent in
 * --from_scheduler_env mode. Null when neither is present.
 */
export function rankFromSchedulerEnv(env: Env): { rank: number; worldSize: number; localRank: number; localSize: number; nodeRank: number; nnodes: number } | null {
  const num = (k: string) => (env[k] === undefined || env[k] === '' ? undefined : Number(env[k]));
  if (num('OMPI_COMM_WORLD_RANK') !== undefined) {
    const worldSize = num('OMPI_COMM_WORLD_SIZE')!;
    const localSize = num('OMPI_COMM_WORLD_LOCAL_SIZE') ?? 1;
    return {
      rank: num('OMPI_COMM_WORLD_RANK')!, worldSize,
      localRank: num('OMPI_COMM_WORLD_LOCAL_RANK') ?? 0, localSize,
      // OMPI_COMM_WORLD_NODE_RANK numbers processes within a node, not nodes; mpirun maps by slot,
      // so with the hostfile's equal slot counts the node is the rank over the local size.
      nodeRank: Math.floor(num('OMPI_COMM_WORLD_RANK')! / localSize), nnodes: Math.max(1, Math.round(worldSize / localSize)),
    };
  }
  if (num('SLURM_PROCID') !== undefined) {
    const worldSize = num('SLURM_NTASKS')!;
    const nnodes = num('SLURM_NNODES') ?? 1;
    const perNode = /^(\d+)/.exec(env.SLURM_NTASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE ?? '')?.[1];
    return {
      rank: num('SLURM_PROCID')!, worldSize,
      localRank: num('SLURM_LOCALID') ?? 0, localSize: perNode ? Number(perNode) : Math.ceil(worldSize / nnodes),
      nodeRank: num('SLURM_NODEID') ?? 0, nnodes,
    };
  }
  return null;
}
