// withWorld(n, script): runs a TypeScript worker script in n real node processes wired like the
// `ds` launcher wires them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, MASTER_ADDR, MASTER_PORT),
// with a hard timeout that kills every one of them. Workers run under tsx, with a resolve hook
// (src-aliases.mjs) that maps each @ds/<name> to packages/<name>/src/index.ts, since vitest's aliases
// do not reach child processes. Works for any package of the repository.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** tsx's loader, resolved from this kit so a package need not depend on tsx itself. */
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const SRC_ALIASES = new URL('./src-aliases.mjs', import.meta.url).href;

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
  /** Working directory of the ranks; default this process's. */
  cwd?: string;
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

/**
 * The node arguments that run a TypeScript script the way withWorld's ranks run it (tsx, @ds/* from
 * sources), for a test that spawns one process itself: spawn(process.execPath, tsNodeArgs(script)).
 */
export function tsNodeArgs(script: string | URL, args: readonly string[] = []): string[] {
  const path = script instanceof URL ? fileURLToPath(script) : script;
  return ['--import', TSX, '--import', SRC_ALIASES, path, ...args];
}

/**
 * Runs `script` (a path, or a URL such as new URL('./workers/x.ts', import.meta.url)) in n ranks and
 * waits for all of them, or for the hard timeout, which SIGKILLs the survivors.
 */
export async function withWorld(n: number, script: string | URL, opts: WorldOptions = {}): Promise<WorldResult> {
  const port = await freePort();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const children: ChildProcess[] = [];
  const results: RankResult[] = [];
  let timedOut = false;
  const exits = Array.from({ length: n }, (_, rank) => {
    const extra = typeof opts.env === 'function' ? opts.env(rank) : (opts.env ?? {});
    const child = spawn(process.execPath, tsNodeArgs(script, opts.args), {
      cwd: opts.cwd ?? process.cwd(),
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

/** The last JSON line a rank printed (workers report their results as one JSON line). */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{'));
  if (lines.length === 0) throw new SyntaxError(`no JSON line in the rank's output:\n${stdout}`);
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/**
 * withWorld for a worker that reports one JSON line: every rank's last JSON line, in rank order.
 * Throws, with every rank's output, when the world timed out or a rank exited other than 0.
 */
export async function worldJson<T>(n: number, script: string | URL, opts: WorldOptions = {}): Promise<T[]> {
  const w = await withWorld(n, script, opts);
  if (w.timedOut || w.ranks.some((r) => r.code !== 0)) {
    throw new Error(`a world of ${n} rank(s) ${w.timedOut ? 'timed out' : 'had a rank exit other than 0'}:\n${describeWorld(w)}`);
  }
  return w.ranks.map((r) => lastJson<T>(r.stdout));
}
