// Swap files are scratch: named so they are recognisable (ds-offload-<kind>-rank<r>-<pid>-<tag>.swap),
// removed when the tier closes or the process exits, and, when a run was killed, found at the next
// start and removed once their pid is gone. They are never checkpoints: checkpoints are written by
// the engine's saveCheckpoint to their own directory.
import { randomBytes } from 'node:crypto';
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const SWAP_NAME = /^ds-offload-(optimizer|param)-rank(\d+)-(\d+)-[0-9a-f]+\.swap$/;

export function swapFileName(kind: 'optimizer' | 'param', rank: number, pid = process.pid): string {
  return `ds-offload-${kind}-rank${rank}-${pid}-${randomBytes(4).toString('hex')}.swap`;
}

/** Whether a process of this pid exists (EPERM: it does, owned by someone else). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface StaleSwap {
  path: string;
  pid: number;
  rank: number;
}

/** Swap files under `dir` whose process is gone. A pid reused by an unrelated process keeps its file (the safe side). */
export function findStaleSwapFiles(dir: string, alive: (pid: number) => boolean = pidAlive): StaleSwap[] {
  const out: StaleSwap[] = [];
  for (const name of readdirSync(dir)) {
    const m = SWAP_NAME.exec(name);
    if (!m) continue;
    const pid = Number(m[3]);
    if (!alive(pid)) out.push({ path: join(dir, name), pid, rank: Number(m[2]) });
  }
  return out;
}

/** Removes the stale swap files under `dir` and returns them (one may vanish under another rank's removal first). */
export function removeStaleSwapFiles(dir: string, alive?: (pid: number) => boolean): StaleSwap[] {
  const removed: StaleSwap[] = [];
  for (const s of findStaleSwapFiles(dir, alive)) {
    try {
      unlinkSync(s.path);
      removed.push(s);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return removed;
}
