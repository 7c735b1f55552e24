// The per-node agent: `ds` starts one on each node (over ssh or pdsh, or one per rank under
// srun/mpirun). It starts that node's ranks and stops them when a rank fails, when it is signalled,
// when its stdin closes (the ssh connection dropped) or when its parent goes away.
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { DEEPSPEED_TERM_GRACE_S } from './args.js';
import { DSLaunchError } from './errors.js';
import { decodeWorldInfo } from './hostfile.js';
import {
  cpuCores, localGpuCount, physicalCoreCount, resolveScript, tsLoaderUrl, which, WATCHDOG_URL,
} from './machine.js';
import { rankFromSchedulerEnv } from './multinode.js';
import { planNodeRanks, rankLogPath } from './node-plan.js';
import { NodeRun, type RankLaunch } from './node-run.js';
import { formatAgentEvent, rankLine } from './protocol.js';
import { buildRankCommand, buildRankEnv, threadsPerRank, type Env } from './rank-env.js';

export interface AgentArgs {
  worldInfo: string | null;
  fromSchedulerEnv: boolean;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  runId: string;
  graceMs: number;
  watchStdin: boolean;
  module: boolean;
  noPython: boolean;
  noLocalRank: boolean;
  enableEachRankLog: string | undefined;
  bindCoresToRank: boolean;
  bindCoreList: string | undefined;
  savePid: number | undefined;
  script: string;
  userArgs: string[];
}

/** Reads back what buildAgentArgv wrote. */
export function parseAgentArgs(argv: readonly string[]): AgentArgs {
  const a: AgentArgs = {
    worldInfo: null, fromSchedulerEnv: false, nodeRank: -1, masterAddr: '127.0.0.1', masterPort: 29500,
    runId: '', graceMs: DEEPSPEED_TERM_GRACE_S * 1000, watchStdin: false, module: false, noPython: false, noLocalRank: false,
    enableEachRankLog: undefined, bindCoresToRank: false, bindCoreList: undefined, savePid: undefined,
    script: '', userArgs: [],
  };
  const sep = argv.indexOf('--');
  if (sep < 0 || sep === argv.length - 1) throw new DSLaunchError('ds agent: expected `-- <script> [args...]` at the end.');
  for (const token of argv.slice(0, sep)) {
    const [flag, value = ''] = token.split(/=(.*)/s, 2) as [string, string | undefined];
    switch (flag) {
      case '--world_info': a.worldInfo = value; break;
      case '--from_scheduler_env': a.fromSchedulerEnv = true; break;
      case '--node_rank': a.nodeRank = Number(value); break;
      case '--master_addr': a.masterAddr = value; break;
      case '--master_port': a.masterPort = Number(value); break;
      case '--run_id': a.runId = value; break;
      case '--grace_ms': a.graceMs = Number(value); break;
      case '--watch_stdin': a.watchStdin = true; break;
      case '--module': a.module = true; break;
      case '--no_python': a.noPython = true; break;
      case '--no_local_rank': a.noLocalRank = true; break;
      case '--enable_each_rank_log': a.enableEachRankLog = value; break;
      case '--bind_cores_to_rank': a.bindCoresToRank = true; break;
      case '--bind_core_list': a.bindCoreList = value; break;
      case '--save_pid': a.savePid = Number(value); break;
      default: throw new DSLaunchError(`ds agent: unknown argument '${token}'.`);
    }
  }
  if (!a.fromSchedulerEnv && (a.worldInfo === null || !Number.isInteger(a.nodeRank))) {
    throw new DSLaunchError('ds agent: needs --world_info and --node_rank, or --from_scheduler_env.');
  }
  a.script = argv[sep + 1]!;
  a.userArgs = argv.slice(sep + 2);
  return a;
}

/** Prepares --enable_each_rank_log's directory (launch.py: a file there is an error). */
export function prepareLogDir(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    throw new DSLaunchError(`--enable_each_rank_log ${dir} is a file; it must be a directory (it is created if missing).`);
  }
  mkdirSync(dir, { recursive: true });
}

/** launch.py's --save_pid: `/tmp/<ds pid>.deepspeed` holding this process's pid; must not exist yet. */
export function writePidFile(launcherPid: number, ownPid: number): string {
  const path = `/tmp/${launcherPid}.deepspeed`;
  if (existsSync(path)) throw new DSLaunchError(`--save_pid: ${path} already exists; remove it if no run owns it.`);
  writeFileSync(path, String(ownPid));
  return path;
}

function planFromScheduler(a: AgentArgs, env: Env, script: ReturnType<typeof resolveScript>): RankLaunch[] {
  const place = rankFromSchedulerEnv(env);
  if (!place) {
    throw new DSLaunchError('ds agent --from_scheduler_env: neither OMPI_COMM_WORLD_* nor SLURM_* variables are set; start it with mpirun or srun.');
  }
  const spec = { ...place, host: hostname(), slot: place.localRank };
  return [{
    spec,
    env: buildRankEnv(env, spec, { masterAddr: a.masterAddr, masterPort: a.masterPort, visibleDevices: null, threads: threadsPerRank(env, cpuCores(), place.localSize) }),
    argv: buildRankCommand({
      script, userArgs: a.userArgs, localRank: place.localRank, noLocalRank: a.noLocalRank,
      nodePath: process.execPath, tsLoader: tsLoaderUrl(), preload: [WATCHDOG_URL], bindPrefix: [],
    }),
  }];
}

/** Runs the agent to completion and returns the exit code for the process. */
export async function runAgent(argv: readonly string[], env: Env): Promise<number> {
  const a = parseAgentArgs(argv);
  const cwd = process.cwd();
  const script = resolveScript(a.script, { module: a.module, noPython: a.noPython, cwd, env });
  const launches = a.fromSchedulerEnv
    ? planFromScheduler(a, env, script)
    : planNodeRanks({
        active: decodeWorldInfo(a.worldInfo!), nodeRank: a.nodeRank, masterAddr: a.masterAddr, masterPort: a.masterPort,
        script, userArgs: a.userArgs, noLocalRank: a.noLocalRank, baseEnv: env, gpus: localGpuCount() > 0, cores: cpuCores(),
        bind: { enabled: a.bindCoresToRank, coreList: a.bindCoreList, physicalCores: physicalCoreCount(), tool: which('numactl', env) ? 'numactl' : 'taskset' },
        nodePath: process.execPath, tsLoader: tsLoaderUrl(), preload: script.kind === 'exec' ? [] : [WATCHDOG_URL],
      });
  const stamp = new Date();
  if (a.enableEachRankLog !== undefined) prepareLogDir(a.enableEachRankLog);
  const pidFile = a.savePid !== undefined ? writePidFile(a.savePid, process.pid) : undefined;

  const out = { stdout: process.stdout, stderr: process.stderr };
  out.stdout.on('error', () => run.stop('SIGTERM'));
  out.stderr.on('error', () => run.stop('SIGTERM'));
  const run = new NodeRun({
    ranks: launches, cwd, graceMs: a.graceMs, watchdog: script.kind !== 'exec',
    logFile: a.enableEachRankLog === undefined ? undefined : (spec) => rankLogPath(a.enableEachRankLog!, stamp, spec.rank),
    onLine: (rank, stream, line) => out[stream].write(`${rankLine(rank, line)}\n`),
  });
  const onSignal = (sig: NodeJS.Signals) => run.stop(sig);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  if (a.watchStdin) {
    process.stdin.on('error', () => run.stop('SIGTERM'));
    process.stdin.on('end', () => run.stop('SIGTERM'));
    process.stdin.resume();
  }
  const parent = process.ppid;
  const orphanCheck = setInterval(() => process.ppid !== parent && run.stop('SIGTERM'), 500);

  const result = await run.done;
  clearInterval(orphanCheck);
  process.stdin.pause();
  process.stdin.destroy();
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, onSignal);
  if (pidFile) rmSync(pidFile, { force: true });
  const failed = result.ranks.find((r) => r.rank === result.failedRank);
  if (failed) {
    const nodeRank = launches[0]?.spec.nodeRank ?? 0;
    out.stderr.write(`${formatAgentEvent({
      event: 'failed', host: hostname(), nodeRank, rank: failed.rank, exitCode: failed.exitCode,
      signal: failed.signal, tail: failed.tail,
    })}\n`);
  } else if (result.spawnError) {
    out.stderr.write(`ds agent: ${result.spawnError}\n`);
  }
  return result.exitCode;
}
