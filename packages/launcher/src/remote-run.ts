// Runs the multi-node commands (one ssh per node, or one pdsh/srun/mpirun) and watches what the
// agents print. The first failure reported by an agent, or the first command that ends non-zero,
// stops every node: ssh agents see their stdin close, pdsh agents get pkill'ed, srun/mpirun get
// SIGTERM; each agent then stops its own ranks. Every command's process group is killed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { signalExitCode, type OutputStream } from './node-run.js';
import { parseAgentEvent, parseRankLine, type AgentFailureEvent } from './protocol.js';
import type { Env } from './rank-env.js';

export interface RemoteCommand {
  /** Shown before lines that do not come from a rank, e.g. `node 1 (worker-1)`. */
  label: string;
  argv: string[];
  env: Env;
}

export interface RemoteRunOptions {
  commands: RemoteCommand[];
  /** How a stop reaches the agents: close ssh's stdin, or run pdsh's kill command, or signal. */
  stopVia: 'stdin' | { killArgv: string[]; env: Env } | 'signal';
  graceMs: number;
  captureOutput?: boolean;
  tailLines?: number;
  /** Every line, as it should be shown: rank lines unchanged, others prefixed with the label. */
  onLine?: (stream: OutputStream, line: string) => void;
}

export interface RemoteRankOutput {
  rank: number;
  output: string;
  tail: string[];
}

export interface RemoteRunResult {
  exitCode: number;
  failure: AgentFailureEvent | null;
  /** A command that ended non-zero without an agent report (e.g. ssh could not connect). */
  commandFailure: { label: string; exitCode: number | null; signal: string | null } | null;
  stoppedBy: NodeJS.Signals | null;
  ranks: RemoteRankOutput[];
  durationMs: number;
}

function lines(stream: Readable | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  stream.setEncoding('utf8');
  let pending = '';
  return new Promise((done) => {
    stream.on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const p of parts) onLine(p);
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      if (pending !== '') onLine(pending);
      done();
    });
  });
}

export class RemoteRun {
  readonly done: Promise<RemoteRunResult>;
  private readonly opts: RemoteRunOptions;
  private readonly children: ChildProcess[] = [];
  private readonly exited = new Set<ChildProcess>();
  private readonly ranks = new Map<number, RemoteRankOutput>();
  private readonly started = performance.now();
  private failure: AgentFailureEvent | null = null;
  private commandFailure: RemoteRunResult['commandFailure'] = null;
  private stoppedBy: NodeJS.Signals | null = null;
  private exitCode = 0;
  private stopping = false;
  private timers: NodeJS.Timeout[] = [];
  private finish!: (r: RemoteRunResult) => void;

  constructor(opts: RemoteRunOptions) {
    this.opts = opts;
    this.done = new Promise((r) => (this.finish = r));
    const closed = opts.commands.map((c) => this.start(c));
    void Promise.all(closed).then(() => this.complete());
  }

  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.stopping) {
      for (const c of this.children) this.kill(c, 'SIGKILL');
      return;
    }
    this.stoppedBy = signal;
    if (!this.failure && !this.commandFailure) this.exitCode = signalExitCode(signal);
    this.stopAll();
  }

  private rankOutput(rank: number): RemoteRankOutput {
    let r = this.ranks.get(rank);
    if (!r) this.ranks.set(rank, (r = { rank, output: '', tail: [] }));
    return r;
  }

  private onLine(label: string, stream: OutputStream, raw: string): void {
    // pdsh puts `host: ` before every line.
    const line = this.opts.stopVia !== 'stdin' && this.opts.stopVia !== 'signal' ? raw.replace(/^[^\s:]+: /, '') : raw;
    const event = parseAgentEvent(line);
    if (event) {
      // The report may be read after its command's exit was seen; it still names the rank.
      const sameCommand = this.commandFailure?.label === label;
      if (!this.failure && (sameCommand || (!this.commandFailure && !this.stopping))) {
        this.failure = event;
        this.commandFailure = null;
        this.exitCode = event.signal !== null ? signalExitCode(event.signal as NodeJS.Signals) : (event.exitCode ?? 1);
        this.stopAll();
      }
      return;
    }
    const rankLine = parseRankLine(line);
    if (rankLine) {
      const r = this.rankOutput(rankLine.rank);
      r.tail.push(rankLine.text);
      if (r.tail.length > (this.opts.tailLines ?? 20)) r.tail.shift();
      if (this.opts.captureOutput) r.output += `${rankLine.text}\n`;
      this.opts.onLine?.(stream, line);
    } else {
      this.opts.onLine?.(stream, `[${label}] ${line}`);
    }
  }

  private start(cmd: RemoteCommand): Promise<void> {
    const child = spawn(cmd.argv[0]!, cmd.argv.slice(1), {
      env: cmd.env,
      detached: true,
      stdio: [this.opts.stopVia === 'stdin' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    child.stdin?.on('error', () => {});
    const exited = new Promise<void>((done) => {
      const onEnd = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exited.has(child)) return;
        this.exited.add(child);
        if ((code !== 0 || signal !== null) && !this.failure && !this.commandFailure && !this.stopping) {
          this.commandFailure = { label: cmd.label, exitCode: code, signal };
          this.exitCode = signal !== null ? signalExitCode(signal) : (code ?? 1);
          this.stopAll();
        }
        done();
      };
      child.on('exit', onEnd);
      child.on('error', (err) => {
        this.opts.onLine?.('stderr', `[${cmd.label}] cannot start '${cmd.argv[0]}': ${err.message}`);
        onEnd(127, null);
      });
    });
    const out = lines(child.stdout, (l) => this.onLine(cmd.label, 'stdout', l));
    const err = lines(child.stderr, (l) => this.onLine(cmd.label, 'stderr', l));
    return Promise.all([exited, Promise.race([Promise.all([out, err]), exited.then(() => new Promise((r) => setTimeout(r, 1000)))])]).then(() => {});
  }

  private kill(child: ChildProcess, signal: NodeJS.Signals): void {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  }

  private stopAll(): void {
    if (this.stopping) return;
    this.stopping = true;
    const via = this.opts.stopVia;
    if (via === 'stdin') {
      for (const c of this.children) c.stdin?.end();
    } else if (via === 'signal') {
      for (const c of this.children) this.kill(c, 'SIGTERM');
    } else {
      const killer = spawn(via.killArgv[0]!, via.killArgv.slice(1), { env: via.env, stdio: 'ignore' });
      killer.on('error', () => {});
    }
    // The agents get the grace period for their ranks plus time to report; then the commands go.
    this.timers.push(setTimeout(() => this.children.forEach((c) => this.kill(c, 'SIGTERM')), this.opts.graceMs + 3000));
    this.timers.push(setTimeout(() => this.children.forEach((c) => this.kill(c, 'SIGKILL')), this.opts.graceMs + 6000));
  }

  private complete(): void {
    for (const t of this.timers) clearTimeout(t);
    for (const c of this.children) this.kill(c, 'SIGKILL');
    this.finish({
      exitCode: this.exitCode,
      failure: this.failure,
      commandFailure: this.commandFailure,
      stoppedBy: this.stoppedBy,
      ranks: [...this.ranks.values()].sort((a, b) => a.rank - b.rank),
      durationMs: performance.now() - this.started,
    });
  }
}
