// Progress of `ds-zero to-fp32` on long work: once consolidation has run longer than `after` (1 s),
// each further rank file read, the output written and the end are one line each, with the rank
// files and bytes so far, the elapsed time and the rate. A quick consolidation prints nothing but its
// result: @ds/core's rule for checkpoint progress (WorkProgress), for the one command that reads
// every rank's file in one process.
import { formatBytes, WorkProgress, type ProgressOptions } from '@ds/core';

/** Milliseconds of work before lines are printed (default 1000) and the clock (tests pass a fake one). */
export type ConsolidateProgressOptions = ProgressOptions;

export class ConsolidateProgress {
  private readonly work: WorkProgress;

  /** `line` receives each progress line (the bin writes them to stderr); `world` is the number of rank files. */
  constructor(
    private readonly line: (text: string) => void,
    private readonly world: number,
    opts: ConsolidateProgressOptions = {},
  ) {
    this.work = new WorkProgress(opts);
  }

  private status(): string {
    return this.work.status(`${this.work.items} of ${this.world} rank file(s)`, 'read');
  }

  private emit(text: string): void {
    if (this.work.slow) this.line(text);
  }

  /** One rank's file read. */
  rankFile(name: string, bytes: number): void {
    this.work.add(bytes);
    this.emit(`to-fp32: read ${name} (${formatBytes(bytes)}); ${this.status()}`);
  }

  /** The consolidated file written. */
  wrote(path: string, bytes: number): void {
    this.emit(`to-fp32: wrote ${path} (${formatBytes(bytes)}); ${this.status()}`);
  }

  done(): void {
    this.emit(`to-fp32: done: ${this.status()}`);
  }
}
