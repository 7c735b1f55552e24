// withWorld(n, script): runs a TypeScript worker script in n real node processes wired like the
// `ds` launcher wires them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, MASTER_ADDR, MASTER_PORT),
// with a hard timeout that kills every one of them. Workers run under tsx, with a resolve hook
// (src-aliases.mjs) that maps @ds/* to the packages' sources, since vitest's aliases do not reach
// child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = resolve(here, '../..');

export interface RankResult {
  rank: number;
  pid: number;
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface WorldResult {
  ranks: RankResult[];
  /** True when the hard timeout fired and the survivors were killed. */
  timedOut: boolean;
  wallMs: number;
}

export interface WorldOptions {
  /** Extra environment for every rank (or a function of the rank). */
  env?: Record<string, string> | ((rank: number) => Record<string, string>);
  /** Hard limit for the whole world; default 60 s. */
  timeoutMs?: number;
  /** Command-line arguments after the script. */
  args?: string[];
}

/** A TCP port that was free a moment ago (the store's listen uses it exclusively; races are rare). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolvePort(port));
    });
  });
}

/** Resolves a worker script path relative to test/. */
export function workerPath(relative: string): string {
  return resolve(packageDir, 'test', relative);
}

export async function withWorld(n: number, scriptPath: string, opts: WorldOptions = {}): Promise<WorldResult> {
  const port = await freePort();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const children: ChildProcess[] = [];
  const results: RankResult[] = [];
  let timedOut = false;
  const exits = Array.from({ length: n }, (_, rank) => {
    const extra = typeof opts.env === 'function' ? opts.env(rank) : (opts.env ?? {});
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', join(here, 'src-aliases.mjs'), scriptPath, ...(opts.args ?? [])], {
      cwd: packageDir,
      env: {
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: String(n),
        LOCAL_RANK: String(rank),
        LOCAL_SIZE: String(n),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const r: RankResult = { rank, pid: child.pid ?? -1, code: null, signal: null, stdout: '', stderr: '' };
    results.push(r);
    child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
    return new Promise<void>((done) =>
      child.on('close', (code, signal) => {
        r.code = code;
        r.signal = signal;
        done();
      }),
    );
  });
  const timer = setTimeout(() => {
    timedOut = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, timeoutMs);
  try {
    await Promise.all(exits);
  } finally {
    clearTimeout(timer);
  }
  return { ranks: results.sort((a, b) => a.rank - b.rank), timedOut, wallMs: Date.now() - started };
}

/** A readable dump of every rank's output, for assertion messages. */
export function describeWorld(w: WorldResult): string {
  return w.ranks
    .map((r) => `--- rank ${r.rank} (pid ${r.pid}) code=${r.code} signal=${r.signal}\n${r.stdout}${r.stderr}`)
    .join('\n');
}
