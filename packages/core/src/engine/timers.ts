// wall_clock_breakdown timers: total and last-step milliseconds for forward, backward,
// backward_allreduce (waiting for gradient reductions) and step.
import { performance } from 'node:perf_hooks';

export class Timers {
  private readonly totals = new Map<string, number>();
  private readonly counts = new Map<string, number>();
  private lastStep = new Map<string, number>();

  private add(name: string, ms: number): void {
    this.totals.set(name, (this.totals.get(name) ?? 0) + ms);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    this.lastStep.set(name, (this.lastStep.get(name) ?? 0) + ms);
  }

  time<T>(name: string, fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.add(name, performance.now() - t0);
    }
  }

  async timeAsync<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.add(name, performance.now() - t0);
    }
  }

  /** Milliseconds per timer since the previous call (one optimizer step's worth), then resets. */
  last(): Record<string, number> {
    const out = Object.fromEntries(this.lastStep);
    this.lastStep = new Map();
    return out;
  }

  /** Total milliseconds per timer since the engine started. */
  total(): Record<string, number> {
    return Object.fromEntries(this.totals);
  }

  summary(): string {
    return [...this.totals].map(([k, ms]) => `${k}: ${ms.toFixed(1)} ms total, ${(ms / (this.counts.get(k) ?? 1)).toFixed(2)} ms avg`).join(' | ');
  }
}
