// Starts and watches the ranks of one node. Each rank runs detached, as the leader of its own
// process group, so stopping a rank stops everything it started. The first rank that exits
// non-zero or dies by a signal stops all the others: SIGTERM to every group, SIGKILL after the
// grace period. Nothing is left running when `done` resolves.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import type { Env } from './rank-env.js';
import type { RankSpec } from './world.js';
import { WATCHDOG_ENV } from './machine.js';

export interface RankLaunch {
  spec: RankSpec;
  argv: string[];
  env: Env;
}

export type OutputStream = 'stdout' | 'stderr';

export interface NodeRunOptions {
  ranks: RankLaunch[];
  cwd: string;
  /** Milliseconds from SIGTERM to SIGKILL when stopping ranks. */
  graceMs: number;
  /** Hard limit for the whole run; past it every rank is stopped and the run reports timedOut. */
  timeoutMs?: number;
  /** Write each rank's stdout and stderr to this file instead of piping it. */
  logFile?: (spec: RankSpec) => string;
  /** Keep each rank's whole output in the result. */
  captureOutput?: boolean;
  /** Called for each complete output line of a rank (not with logFile). */
  onLine?: (rank: number, stream: OutputStream, line: string) => void;
  /** Give node ranks the fd-3 watchdog pipe (see machine.ts). */
  watchdog?: boolean;
  /** Lines kept per rank for the failure report. */
  tailLines?: number;
}

export interface RankResult {
  rank: number;
  host: string;
  pid: number | undefined;
  /** Exit code, or null when killed by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr interleaved as they arrived (only with captureOutput). */
  output: string;
  stdout: string;
  stderr: string;
  /** The last lines of output, for failure reports. */
  tail: string[];
}

export interface NodeRunResult {
  /** 0; the failed rank's code (128+signal when killed); 124 on timeout; 128+signal when stopped. */
  exitCode: number;
  failedRank: number | null;
  timedOut: boolean;
  /** Ranks still running when the timeout hit. */
  stillRunning: number[];
  /** The signal passed to stop(), if the run was stopped from outside. */
  stoppedBy: NodeJS.Signals | null;
  /** Set when a rank could not be started at all (e.g. executable missing). */
  spawnError: string | null;
  ranks: RankResult[];
  durationMs: number;
}

interface Live {
  launch: RankLaunch;
  child: ChildProcess;
  result: RankResult;
  exited: boolean;
  closed: Promise<void>;
}

export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // the group is gone
  }
}

function pipeLines(stream: Readable | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  stream.setEncoding('utf8');
  let pending = '';
  return new Promise((resolveClosed) => {
    stream.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      if (pending !== '') onLine(pending);
      pending = '';
      resolveClosed();
    });
  });
}

function lastLines(path: string, n: number): string[] {
  try {
    const lines = readFileSync(path, 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-n);
  } catch {
    return [];
  }
}

/** A running node. `done` resolves once every rank and every process they started is gone. */
export class NodeRun {
  readonly done: Promise<NodeRunResult>;
  private readonly live: Live[] = [];
  private readonly opts: NodeRunOptions;
  private readonly started = performance.now();
  private failedRank: number | null = null;
  private exitCode = 0;
  private timedOut = false;
  private stillRunning: number[] = [];
  private stoppedBy: NodeJS.Signals | null = null;
  private spawnError: string | null = null;
  private stopping = false;
  private killTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private finish!: (r: NodeRunResult) => void;

  constructor(opts: NodeRunOptions) {
    this.opts = opts;
    this.done = new Promise((r) => (this.finish = r));
    for (const launch of opts.ranks) this.start(launch);
    if (opts.timeoutMs !== undefined) {
      this.timeoutTimer = setTimeout(() => this.onTimeout(), opts.timeoutMs);
    }
    if (opts.ranks.length === 0) void this.complete();
  }

  /** Process ids of the ranks (each also the id of the rank's process group). */
  get pids(): number[] {
    return this.live.map((l) => l.child.pid).filter((p): p is number => p !== undefined);
  }

  /** Stops every rank with `signal` (SIGKILL after the grace period); a second call kills at once. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.stopping) {
      this.killAll('SIGKILL');
      return;
    }
    this.stoppedBy = signal;
    if (this.failedRank === null && !this.timedOut) this.exitCode = signalExitCode(signal);
    this.stopAll(signal);
  }

  private start(launch: RankLaunch): void {
    const { spec } = launch;
    const tailMax = this.opts.tailLines ?? 20;
    const result: RankResult = {
      rank: spec.rank, host: spec.host, pid: undefined, exitCode: null, signal: null,
      output: '', stdout: '', stderr: '', tail: [],
    };
    const logPath = this.opts.logFile?.(spec);
    const logFd = logPath === undefined ? undefined : openSync(logPath, 'w');
    const env = { ...launch.env };
    if (this.opts.watchdog) env[WATCHDOG_ENV] = '3';
    const child = spawn(launch.argv[0]!, launch.argv.slice(1), {
      cwd: this.opts.cwd,
      env,
      detached: true,
      stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe', this.opts.watchdog ? 'pipe' : 'ignore'],
    });
    if (logFd !== undefined) closeSync(logFd);
    result.pid = child.pid;
    const onLine = (stream: OutputStream) => (line: string) => {
      result.tail.push(line);
      if (result.tail.length > tailMax) result.tail.shift();
      if (this.opts.captureOutput) {
        result.output += `${line}\n`;
        result[stream] += `${line}\n`;
      }
      this.opts.onLine?.(spec.rank, stream, line);
    };
    const closed = Promise.all([pipeLines(child.stdout, onLine('stdout')), pipeLines(child.stderr, onLine('stderr'))]).then(() => {});
    const live: Live = { launch, child, result, exited: false, closed };
    this.live.push(live);
    child.on('error', (err) => {
      // Only spawn failures reach here with no pid; a started child reports through 'exit'.
      if (child.pid !== undefined || live.exited) return;
      this.spawnError ??= `rank ${spec.rank}: cannot start '${launch.argv[0]}': ${err.message}`;
      result.tail.push(this.spawnError);
      this.onExit(live, 127, null);
    });
    child.on('exit', (code, signal) => {
      if (logPath !== undefined) result.tail = lastLines(logPath, tailMax);
      this.onExit(live, code, signal);
    });
  }

  private onExit(live: Live, code: number | null, signal: NodeJS.Signals | null): void {
    if (live.exited) return;
    live.exited = true;
    live.result.exitCode = code;
    live.result.signal = signal;
    const failed = signal !== null || code !== 0;
    if (failed && !this.stopping) {
      this.failedRank = live.result.rank;
      this.exitCode = signal !== null ? signalExitCode(signal) : code!;
      this.stopAll('SIGTERM');
    }
    if (this.live.length === this.opts.ranks.length && this.live.every((l) => l.exited)) void this.complete();
  }

  private onTimeout(): void {
    if (this.stopping) return;
    this.timedOut = true;
    this.stillRunning = this.live.filter((l) => !l.exited).map((l) => l.result.rank);
    if (this.failedRank === null) this.exitCode = 124;
    this.stopAll('SIGTERM');
  }

  private stopAll(signal: NodeJS.Signals): void {
    this.stopping = true;
    this.killAll(signal);
    if (signal !== 'SIGKILL' && this.killTimer === undefined) {
      this.killTimer = setTimeout(() => this.killAll('SIGKILL'), this.opts.graceMs);
    }
  }

  private killAll(signal: NodeJS.Signals): void {
    for (const l of this.live) killGroup(l.child.pid, signal);
  }

  private async complete(): Promise<void> {
    clearTimeout(this.timeoutTimer);
    clearTimeout(this.killTimer);
    // A rank may have left children behind in its group; they do not outlive the run.
    this.killAll('SIGKILL');
    const drained = Promise.all(this.live.map((l) => l.closed));
    await Promise.race([drained, new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const l of this.live) l.child.stdio[3]?.destroy();
    this.finish({
      exitCode: this.exitCode,
      failedRank: this.failedRank,
      timedOut: this.timedOut,
      stillRunning: this.stillRunning,
      stoppedBy: this.stoppedBy,
      spawnError: this.spawnError,
      ranks: this.live.map((l) => l.result).sort((a, b) => a.rank - b.rank),
      durationMs: performance.now() - this.started,
    });
  }
}
