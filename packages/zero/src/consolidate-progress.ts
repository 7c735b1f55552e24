// Progress of `ds-zero to-fp32` on long work: once consolidation has run longer than `after` (1 s),
// each further rank file read, the output written and the end are one line each, with the rank
// files and bytes so far, the elapsed time and the rate. A quick consolidation prints nothing but its
// result. This follows @ds/core's checkpoint progress (src/checkpoint/progress.ts), which core does
// not export: the same rule, for the one command that reads every rank's file in one process.
import { performance } from 'node:perf_hooks';

export interface ConsolidateProgressOptions {
  /** Milliseconds of work before lines are printed; default 1000. */
  after?: number;
  /** The clock, in milliseconds (tests pass a fake one). */
  now?: () => number;
}

/** 1536 -> '1.5 MiB'-style sizes, as core's checkpoint progress writes them. */
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

export class ConsolidateProgress {
  private readonly t0: number;
  private readonly after: number;
  private readonly now: () => number;
  private bytes = 0;
  private files = 0;

  /** `line` receives each progress line (the bin writes them to stderr); `world` is the number of rank files. */
  constructor(
    private readonly line: (text: string) => void,
    private readonly world: number,
    opts: ConsolidateProgressOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.after = opts.after ?? 1000;
    this.t0 = this.now();
  }

  private status(): string {
    const s = (this.now() - this.t0) / 1000;
    const rate = s > 0 ? `, ${formatBytes(this.bytes / s)}/s` : '';
    return `${this.files} of ${this.world} rank file(s), ${formatBytes(this.bytes)} read in ${s.toFixed(1)} s${rate}`;
  }

  private emit(text: string): void {
    if (this.now() - this.t0 > this.after) this.line(text);
  }

  /** One rank's file read. */
  rankFile(name: string, bytes: number): void {
    this.bytes += bytes;
    this.files += 1;
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
