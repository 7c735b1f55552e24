// Runs a TypeScript worker under `mpirun -np n` with a hard timeout that kills the whole process
// group, and tells when this machine cannot (no mpirun or no libmpi.so.40), so that tests skip
// with the reason printed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { freePort, tsNodeArgs } from '@ds-internal/test-kit';

export interface MpiRunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  wallMs: number;
  /** Every JSON line the ranks printed, by its `rank` field. */
  reports: Map<number, Record<string, unknown>>;
}

export interface MpiRunOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Extra mpirun arguments before the program. */
  mpirunArgs?: string[];
  args?: string[];
}

/** Why MPI tests cannot run here, or null when they can. */
export function mpiMissing(): string | null {
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0) return 'mpirun is not on PATH (install openmpi-bin)';
  const ldconfig = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const found = (ldconfig.stdout ?? '').includes('libmpi.so.40') || existsSync('/usr/lib/x86_64-linux-gnu/libmpi.so.40');
  return found ? null : 'libmpi.so.40 (Open MPI) is not installed (install libopenmpi-dev)';
}

/** mpirun flags every test needs: root is allowed in CI containers, 4 ranks may share 2 cores. */
export function baseMpirunArgs(): string[] {
  const args = ['--oversubscribe', '--mca', 'btl', 'self,vader,tcp', '--mca', 'btl_vader_single_copy_mechanism', 'none'];
  if (process.getuid?.() === 0) args.unshift('--allow-run-as-root');
  return args;
}

export async function mpiRun(n: number, script: URL, opts: MpiRunOptions = {}): Promise<MpiRunResult> {
  const port = await freePort();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const child = spawn('mpirun', ['-np', String(n), ...baseMpirunArgs(), ...(opts.mpirunArgs ?? []), process.execPath, ...tsNodeArgs(script, opts.args ?? [])], {
    env: { ...process.env, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on('close', (c, s) => done([c, s])));
  clearTimeout(timer);
  const reports = new Map<number, Record<string, unknown>>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      if (typeof r.rank === 'number') reports.set(r.rank, r);
    } catch {
      /* a rank's partial line */
    }
  }
  return { code, signal, stdout, stderr, timedOut, wallMs: Date.now() - started, reports };
}

export function describeRun(r: MpiRunResult): string {
  return `code=${r.code} signal=${r.signal} timedOut=${r.timedOut} wall=${r.wallMs}ms\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}
