// The `ds` command, start to finish: flags -> hostfile -> world -> either this node's ranks
// started here, or one agent per node through ssh/pdsh/srun/mpirun. Returns the exit code.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_ARGS, parseDsArgs, usage, type DsArgs } from './args.js';
import { prepareLogDir, writePidFile } from './agent.js';
import { DSLaunchError } from './errors.js';
import { encodeWorldInfo, readHostfile } from './hostfile.js';
import {
  agentCommand, cpuCores, localGpuCount, numaNodeCount, physicalCoreCount, resolveScript, tsLoaderUrl, which, WATCHDOG_URL,
} from './machine.js';
import {
  buildAgentArgv, buildMasterAddrCommand, buildOpenMpiCommand, buildPdshCommand, buildRemoteShellCommand,
  buildSlurmCommand, buildSshCheckCommand, buildSshCommand, collectExports, parseDsEnvFile, sshOptions,
} from './multinode.js';
import { planNodeRanks, rankLogPath } from './node-plan.js';
import { NodeRun } from './node-run.js';
import { formatFailure, rankLine } from './protocol.js';
import type { Env } from './rank-env.js';
import { RemoteRun, type RemoteCommand, type RemoteRunOptions } from './remote-run.js';
import { planWorld, type WorldPlan } from './world.js';

export interface CliContext {
  env: Env;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

interface Stoppable {
  stop(signal: NodeJS.Signals): void;
}

/**
 * Forwards SIGINT/SIGTERM to a run for as long as `work` lasts, and stops the run if our own output
 * breaks (e.g. `ds ... | head` exited), rather than dying on EPIPE with the ranks left to the watchdog.
 */
async function withSignals<T>(run: Stoppable, work: Promise<T>, ctx: CliContext): Promise<T> {
  const handler = (sig: NodeJS.Signals) => run.stop(sig);
  const broken = () => run.stop('SIGTERM');
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  ctx.stdout.on('error', broken);
  ctx.stderr.on('error', broken);
  try {
    return await work;
  } finally {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    ctx.stdout.off('error', broken);
    ctx.stderr.off('error', broken);
  }
}

export async function runDs(argv: readonly string[], ctx: CliContext): Promise<number> {
  const args = parseDsArgs(argv);
  if (args.help) {
    ctx.stdout.write(`${usage()}\n`);
    return 0;
  }
  const pool = readHostfile(args.hostfile);
  if (!pool && args.hostfile !== DEFAULT_ARGS.hostfile) {
    ctx.stderr.write(`ds: hostfile ${args.hostfile} not found; running with local resources only.\n`);
  }
  const plan = planWorld({ args, pool, env: ctx.env, localGpuCount: localGpuCount(), defaultCpuRanks: numaNodeCount() });
  for (const note of plan.notes) ctx.stderr.write(`ds: ${note}\n`);
  const env: Env = { ...ctx.env };
  for (const k of plan.dropEnv) delete env[k];
  return plan.multiNode ? runMultiNode(args, plan, env, ctx) : runLocal(args, plan, env, ctx);
}

async function runLocal(args: DsArgs, plan: WorldPlan, env: Env, ctx: CliContext): Promise<number> {
  const nodeRank = args.noSsh ? args.nodeRank : 0;
  const masterAddr = plan.masterAddr || [...plan.active.keys()][0]!;
  const script = resolveScript(args.userScript, { module: args.module, noPython: args.noPython, cwd: ctx.cwd, env });
  const launches = planNodeRanks({
    active: plan.active, nodeRank, masterAddr, masterPort: args.masterPort, script, userArgs: args.userArgs,
    noLocalRank: args.noLocalRank, baseEnv: env, gpus: localGpuCount() > 0, cores: cpuCores(),
    bind: { enabled: args.bindCoresToRank, coreList: args.bindCoreList, physicalCores: physicalCoreCount(), tool: which('numactl', env) ? 'numactl' : 'taskset' },
    nodePath: process.execPath, tsLoader: tsLoaderUrl(), preload: script.kind === 'exec' ? [] : [WATCHDOG_URL],
  });
  const logDir = args.enableEachRankLog === undefined ? undefined : resolve(ctx.cwd, args.enableEachRankLog);
  if (logDir !== undefined) prepareLogDir(logDir);
  const stamp = new Date();
  const pidFile = args.savePid ? writePidFile(process.pid, process.pid) : undefined;
  if (args.savePid) ctx.stdout.write(`ds: launcher pid: ${process.pid}\n`);
  const out = { stdout: ctx.stdout, stderr: ctx.stderr };
  const run = new NodeRun({
    ranks: launches, cwd: ctx.cwd, graceMs: args.termGraceS * 1000, watchdog: script.kind !== 'exec',
    logFile: logDir === undefined ? undefined : (spec) => rankLogPath(logDir, stamp, spec.rank),
    onLine: (rank, stream, line) => out[stream].write(`${rankLine(rank, line)}\n`),
  });
  try {
    const result = await withSignals(run, run.done, ctx);
    const failed = result.ranks.find((r) => r.rank === result.failedRank);
    if (failed) {
      ctx.stderr.write(`${formatFailure({ ...failed, host: failed.host, others: result.ranks.length - 1 })}\n`);
    } else if (result.spawnError) {
      ctx.stderr.write(`ds: ${result.spawnError}\n`);
    } else if (result.stoppedBy) {
      ctx.stderr.write(`ds: received ${result.stoppedBy}; stopped all ${result.ranks.length} rank(s).\n`);
    }
    return result.exitCode;
  } finally {
    if (pidFile) rmSync(pidFile, { force: true });
  }
}

/** `.deepspeed_env` (or $DS_ENV_FILE) from the home directory, then the working directory. */
export function readDsEnvFiles(env: Env, cwd: string): Map<string, string>[] {
  const name = env.DS_ENV_FILE || '.deepspeed_env';
  // resolve, not join: an absolute DS_ENV_FILE names one file, as os.path.join does in DeepSpeed.
  const paths = [...new Set([resolve(env.HOME || homedir(), name), resolve(cwd, name)])];
  return paths.filter((p) => existsSync(p)).map((p) => parseDsEnvFile(readFileSync(p, 'utf8'), p));
}

function requireTool(name: string, launcher: string, env: Env): void {
  if (!which(name, env)) {
    throw new DSLaunchError(`launcher '${launcher}' not installed: '${name}' is not on PATH. Install it, or pick another --launcher.`);
  }
}

function sshCheck(args: DsArgs, host: string, sshOpts: string[], env: Env): void {
  const check = buildSshCheckCommand(host, sshOpts);
  const r = spawnSync(check[0]!, check.slice(1), { env, stdio: 'ignore', timeout: 30_000 });
  if (r.status !== 0) {
    throw new DSLaunchError(
      `Using hostfile at ${args.hostfile} but host=${host} was not reachable via ssh (\`${check.join(' ')}\` failed). ` +
        `If you are running with a single node please remove ${args.hostfile} or setup passwordless ssh.`,
      { code: 'DS_LAUNCH_SSH' },
    );
  }
}

function askMasterAddr(host: string, sshOpts: string[], env: Env): string {
  const cmd = buildMasterAddrCommand(host, sshOpts);
  const r = spawnSync(cmd[0]!, cmd.slice(1), { env, encoding: 'utf8', timeout: 30_000 });
  const addr = r.status === 0 ? r.stdout.trim().split(/\s+/)[0] : undefined;
  if (!addr) {
    throw new DSLaunchError(`Unable to detect a master address via 'hostname -I' on ${host}; pass --master_addr.`);
  }
  return addr;
}

async function runMultiNode(args: DsArgs, plan: WorldPlan, env: Env, ctx: CliContext): Promise<number> {
  const hosts = [...plan.active.keys()];
  const viaSsh = args.launcher === 'ssh' || args.launcher === 'pdsh';
  // For ssh, --launcher_args are ssh options and apply to the checks too; pdsh's are pdsh options.
  const sshOpts = args.launcher === 'ssh' ? sshOptions(args) : args.sshPort !== undefined ? ['-p', String(args.sshPort)] : [];
  requireTool({ ssh: 'ssh', pdsh: 'pdsh', slurm: 'srun', openmpi: 'mpirun' }[args.launcher], args.launcher, env);
  if (!args.noSshCheck) sshCheck(args, hosts[0]!, sshOpts, env);
  const masterAddr = plan.masterAddr || (viaSsh ? askMasterAddr(hosts[0]!, sshOpts, env) : hosts[0]!);

  const exports = collectExports(env, readDsEnvFiles(env, ctx.cwd));
  const runId = randomBytes(6).toString('hex');
  const graceMs = args.termGraceS * 1000;
  const agentArgs = (nodeRank: number | '%n', worldInfo: string | null, watchStdin: boolean) =>
    buildAgentArgv({
      agent: agentCommand(process.execPath), worldInfo, nodeRank, masterAddr, masterPort: args.masterPort,
      runId, graceMs, watchStdin, args, savePid: args.savePid ? process.pid : undefined,
    });
  const worldInfo = encodeWorldInfo(plan.active);

  let commands: RemoteCommand[];
  let stopVia: RemoteRunOptions['stopVia'];
  if (args.launcher === 'ssh') {
    commands = hosts.map((host, i) => ({
      label: `node ${i} (${host})`, env,
      argv: buildSshCommand(host, sshOpts, buildRemoteShellCommand(ctx.cwd, exports, agentArgs(i, worldInfo, true))),
    }));
    stopVia = 'stdin';
  } else if (args.launcher === 'pdsh') {
    const pdsh = buildPdshCommand(hosts, args, buildRemoteShellCommand(ctx.cwd, exports, agentArgs('%n', worldInfo, false)), runId, env);
    const pdshEnv = { ...env, ...pdsh.env };
    commands = [{ label: 'pdsh', argv: pdsh.argv, env: pdshEnv }];
    stopVia = { killArgv: pdsh.killArgv, env: pdshEnv };
  } else {
    const agent = agentArgs(0, null, false);
    const argv = args.launcher === 'slurm'
      ? buildSlurmCommand(plan.active, args, exports, agent)
      : buildOpenMpiCommand(plan.active, args, exports, agent);
    commands = [{ label: args.launcher, argv, env }];
    stopVia = 'signal';
  }

  const out = { stdout: ctx.stdout, stderr: ctx.stderr };
  const run = new RemoteRun({ commands, stopVia, graceMs, onLine: (stream, line) => out[stream].write(`${line}\n`) });
  const result = await withSignals(run, run.done, ctx);
  const worldSize = [...plan.active.values()].reduce((n, s) => n + s.length, 0);
  if (result.failure) {
    const f = result.failure;
    ctx.stderr.write(`${formatFailure({ rank: f.rank, host: f.host, exitCode: f.exitCode, signal: f.signal, tail: f.tail, others: worldSize - 1 })}\n`);
  } else if (result.commandFailure) {
    const c = result.commandFailure;
    const how = c.signal ? `was killed by ${c.signal}` : `exited with code ${c.exitCode}`;
    const hint = args.launcher === 'ssh' && c.exitCode === 255 ? ' (ssh exits 255 when it cannot connect or the connection drops)' : '';
    ctx.stderr.write(`ds: ${c.label} ${how}${hint}; stopped every node.\n`);
  } else if (result.stoppedBy) {
    ctx.stderr.write(`ds: received ${result.stoppedBy}; stopped every node.\n`);
  }
  return result.exitCode;
}
