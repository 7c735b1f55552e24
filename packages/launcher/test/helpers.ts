// Shared by the launcher tests: paths, process-table checks, and running the built `ds` bin.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PKG = dirname(dirname(fileURLToPath(import.meta.url)));
export const FIXTURES = join(PKG, 'test', 'fixtures');
export const DS_BIN = join(PKG, 'dist', 'bin', 'ds.js');

export function requireBuiltBin(): void {
  if (!existsSync(DS_BIN)) {
    throw new Error(`${DS_BIN} is missing: run 'pnpm --filter @ds/launcher build' before these tests.`);
  }
}

const made: string[] = [];

/** A fresh directory under the system temp dir; removed by cleanupTempDirs (call it in afterAll). */
export function tempDir(prefix = 'ds-launcher-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Whether a process is alive (a zombie waiting for a reaper counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Pids the ranks wrote into `dir` (rank<R>.pid and rank<R>.child.pid). */
export function writtenPids(dir: string): number[] {
  return readdirSync(dir).filter((f) => f.endsWith('.pid')).map((f) => Number(readFileSync(join(dir, f), 'utf8')));
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface DsRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node dist/bin/ds.js ...args`; `onStart` gets the child (to signal it). Killed after `limitMs`. */
export function runDsBin(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; limitMs?: number; onStart?: (pid: number) => void } = {},
): Promise<DsRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [DS_BIN, ...args], {
    cwd: opts.cwd ?? FIXTURES,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const limit = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? 30_000);
  if (child.pid !== undefined) opts.onStart?.(child.pid);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}
