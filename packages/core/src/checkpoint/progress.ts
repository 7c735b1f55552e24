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

/**
 * Bytes and items of long work so far, with the elapsed time and rate, and whether the work has run
 * longer than `after` (then its progress lines are worth showing). Checkpoint saves and loads use it,
 * and so does ds-zero's consolidation.
 */
export class WorkProgress {
  private readonly t0: number;
  private readonly after: number;
  private readonly now: () => number;
  bytes = 0;
  items = 0;

  constructor(opts: ProgressOptions = {}) {
    this.now = opts.now ?? (() => performance.now());
    this.after = opts.after ?? 1000;
    this.t0 = this.now();
  }

  /** One more item of `bytes` done. */
  add(bytes: number): void {
    this.bytes += bytes;
    this.items += 1;
  }

  /** True once the work has run longer than `after`. */
  get slow(): boolean {
    return this.now() - this.t0 > this.after;
  }

  /** `<items>, 1.5 MiB <verb> in 2.0 s, 768.0 KiB/s`, with the caller's wording of the items. */
  status(items: string, verb = ''): string {
    const s = (this.now() - this.t0) / 1000;
    const rate = s > 0 ? `, ${formatBytes(this.bytes / s)}/s` : '';
    return `${items}, ${formatBytes(this.bytes)}${verb ? ` ${verb}` : ''} in ${s.toFixed(1)} s${rate}`;
  }
}

export class CheckpointProgress {
  private readonly work: WorkProgress;

  /** `verb` is 'saving' or 'loading'; `where` the tag directory. */
  constructor(
    private readonly log: Log,
    private readonly verb: 'saving' | 'loading',
    private readonly where: string,
    opts: ProgressOptions = {},
  ) {
    this.work = new WorkProgress(opts);
  }

  private status(): string {
    return this.work.status(`${this.work.items} file(s)`);
  }

  /** One file written or read. */
  file(name: string, bytes: number): void {
    this.work.add(bytes);
    this.log(`checkpoint: ${this.verb} ${this.where}: ${name} (${formatBytes(bytes)}); ${this.status()}`, this.work.slow ? 'info' : 'debug');
  }

  /** The end of the save or load. */
  done(): void {
    const verb = this.verb === 'saving' ? 'saved' : 'loaded';
    this.log(`checkpoint: ${verb} ${this.where}: ${this.status()}`, this.work.slow ? 'info' : 'debug');
  }
}
