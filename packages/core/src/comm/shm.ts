// Naming and sweeping of the cpu backend's shared-memory segments. Every segment name starts with
// `ds-<pid of its creator>-`, so a segment whose creator is gone is garbage that any later job on
// the host may remove (segments are normally unlinked as soon as every rank has mapped them).
import { readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export function segmentName(tag: string): string {
  return `/ds-${process.pid}-${tag}-${randomBytes(4).toString('hex')}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Unlinks ds segments in `dir` whose creating process no longer exists; returns their names. */
export function sweepStaleSegments(dir: string, unlink: (name: string) => boolean): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    const m = /^ds-(\d+)-/.exec(entry);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    if (unlink(`/${entry}`)) removed.push(entry);
  }
  return removed;
}
