// Progress of a checkpoint save or load on rank 0: each file is a debug line; once the work has run
// longer than `after` (1 s), each further file and the end are info lines with the bytes and files
// so far, the elapsed time and the rate. A small checkpoint (tests, tiny models) stays quiet at the
// default log level; a large one shows it is moving. DeepSpeed logs one line per file it saves.
import { performance } from 'node:perf_hooks';

import type { Log } from '../monitor/log.js';

export interface ProgressOptions {
  /** Milliseconds before progress lines are info rather than debug; default 1000. */
  after?: number;
  /** The clock, in milliseconds (tests pass a fake one). */
  now?: () => number;
}

/** 1536 -> '1.5 KiB'. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v.toFixed(0)} B` : `${v.toFixed(1)} ${units[u]}`;
}

export class CheckpointProgress {
  private readonly t0: number;
  private readonly after: number;
  private readonly now: () => number;
  private bytes = 0;
  private files = 0;

  /** `verb` is 'saving' or 'loading'; `where` the tag directory. */
  constructor(
    private readonly log: Log,
    private readonly verb: 'saving' | 'loading',
    private readonly where: string,
    opts: ProgressOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.after = opts.after ?? 1000;
    this.t0 = this.now();
  }

  private status(): string {
    const s = (this.now() - this.t0) / 1000;
    const rate = s > 0 ? `, ${formatBytes(this.bytes / s)}/s` : '';
    return `${this.files} file(s), ${formatBytes(this.bytes)} in ${s.toFixed(1)} s${rate}`;
  }

  private get slow(): boolean {
    return this.now() - this.t0 > this.after;
  }

  /** One file written or read. */
  file(name: string, bytes: number): void {
    this.bytes += bytes;
    this.files += 1;
    this.log(`checkpoint: ${this.verb} ${this.where}: ${name} (${formatBytes(bytes)}); ${this.status()}`, this.slow ? 'info' : 'debug');
  }

  /** The end of the save or load. */
  done(): void {
    const verb = this.verb === 'saving' ? 'saved' : 'loaded';
    this.log(`checkpoint: ${verb} ${this.where}: ${this.status()}`, this.slow ? 'info' : 'debug');
  }
}
