// CommsLogger: DeepSpeed's comms_logger for our groups. It observes finished ops (attach() to each
// group), keeps per (op, message size) counts and latencies, and prints DeepSpeed's summary table.
// Bandwidths follow DeepSpeed's own definitions (Gbps; see bandwidth.ts). Latency is the time the
// op spent on the comm thread, waiting for peers included; ops are not made blocking to measure it.
import { deepspeedBandwidth } from './bandwidth.js';
import type { CommEvent, CommOpName, ProcessGroup } from './types.js';

/** The ds_config `comms_logger` section, camelCased. Defaults are DeepSpeed's. */
export interface CommsLoggerConfig {
  enabled?: boolean;
  /** Log every op as it completes. */
  verbose?: boolean;
  /** Profile every op (default true); otherwise only those in profOps. */
  profAll?: boolean;
  /** Op names to profile when profAll is false (DeepSpeed's names, e.g. all_reduce, or ours). */
  profOps?: readonly string[];
  /** Record the calling function with each op and group rows by it. */
  debug?: boolean;
}

/** DeepSpeed's log name for each op (what prof_ops and the summary use). */
export const DS_OP_NAMES: Readonly<Record<CommOpName, string>> = {
  allReduce: 'all_reduce',
  allGather: 'all_gather_into_tensor',
  reduceScatter: 'reduce_scatter_tensor',
  broadcast: 'broadcast',
  allToAll: 'all_to_all_single',
  send: 'send',
  recv: 'recv',
  barrier: 'barrier',
};

interface Entry {
  count: number;
  latencies: number[];
  algbw: number[];
  busbw: number[];
}

/** DeepSpeed's convert_size: 1024-based units, two decimals at most. */
export function formatMsgSize(bytes: number): string {
  if (bytes === 0) return '0B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(bytes) / Math.log(1024)));
  const v = Math.round((bytes / 1024 ** i) * 100) / 100;
  return `${Number.isInteger(v) ? v.toFixed(1) : String(v)} ${units[i]}`;
}

/** Mean after dropping 10 % of the values at each end (DeepSpeed's trim_mean(x, 0.1)). */
export function trimmedMean(values: readonly number[], fraction = 0.1): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const cut = Math.floor(sorted.length * fraction);
  const kept = sorted.slice(cut, sorted.length - cut);
  return kept.reduce((s, v) => s + v, 0) / kept.length;
}

export class CommsLogger {
  readonly enabled: boolean;
  readonly verbose: boolean;
  readonly profAll: boolean;
  readonly profOps: ReadonlySet<string>;
  readonly debug: boolean;
  private readonly data = new Map<string, Map<number, Entry>>();

  constructor(
    config: CommsLoggerConfig = {},
    private readonly log: (line: string) => void = (line) => console.log(line),
  ) {
    this.enabled = config.enabled ?? false;
    this.verbose = config.verbose ?? false;
    this.profAll = config.profAll ?? true;
    this.profOps = new Set(config.profOps ?? []);
    this.debug = config.debug ?? false;
  }

  /** From the ds_config section as written in JSON (snake_case keys). */
  static fromConfig(section: { enabled?: boolean; verbose?: boolean; prof_all?: boolean; prof_ops?: string[]; debug?: boolean } = {}, log?: (line: string) => void): CommsLogger {
    return new CommsLogger({ enabled: section.enabled, verbose: section.verbose, profAll: section.prof_all, profOps: section.prof_ops, debug: section.debug }, log);
  }

  /** Starts observing `group`; returns a function that stops it. */
  attach(group: ProcessGroup): () => void {
    return group.addObserver((e) => this.record(e), { captureCaller: this.debug });
  }

  private wanted(op: CommOpName): boolean {
    return this.profAll || this.profOps.has(DS_OP_NAMES[op]) || this.profOps.has(op);
  }

  record(e: CommEvent): void {
    if (!this.enabled || !e.ok || !this.wanted(e.op)) return;
    const name = DS_OP_NAMES[e.op] + (this.debug && e.caller ? ` | [Caller Func: ${e.caller}]` : '');
    const { algbw, busbw } = deepspeedBandwidth(e.op, e.groupSize, e.bytes, e.latencyMs);
    let bySize = this.data.get(name);
    if (!bySize) this.data.set(name, (bySize = new Map()));
    let entry = bySize.get(e.bytes);
    if (!entry) bySize.set(e.bytes, (entry = { count: 0, latencies: [], algbw: [], busbw: [] }));
    entry.count++;
    entry.latencies.push(e.latencyMs);
    entry.algbw.push(algbw);
    entry.busbw.push(busbw);
    if (this.verbose) {
      this.log(
        `comm op: ${name} | time (ms): ${e.latencyMs.toFixed(2)} | msg size: ${formatMsgSize(e.bytes)} | algbw (Gbps): ${algbw.toFixed(2)} | busbw (Gbps): ${busbw.toFixed(2)}`,
      );
    }
  }

  /** Recorded ops: name -> message size -> count and trimmed means. */
  stats(): Map<string, Map<number, { count: number; totalLatencyMs: number; avgLatencyMs: number; algbwGbps: number; busbwGbps: number }>> {
    const out = new Map<string, Map<number, { count: number; totalLatencyMs: number; avgLatencyMs: number; algbwGbps: number; busbwGbps: number }>>();
    for (const [name, bySize] of this.data) {
      const m = new Map<number, { count: number; totalLatencyMs: number; avgLatencyMs: number; algbwGbps: number; busbwGbps: number }>();
      for (const [size, e] of [...bySize].sort((a, b) => a[0] - b[0])) {
        m.set(size, {
          count: e.count,
          totalLatencyMs: e.latencies.reduce((s, v) => s + v, 0),
          avgLatencyMs: trimmedMean(e.latencies),
          algbwGbps: trimmedMean(e.algbw),
          busbwGbps: trimmedMean(e.busbw),
        });
      }
      out.set(name, m);
    }
    return out;
  }

  /** DeepSpeed's log_summary() table. */
  summary(): string {
    const cols = ['Comm. Op', 'Message Size', 'Count', 'Total Latency(ms)', 'Avg Latency(ms)', 'tput_avg (Gbps)', 'busbw_avg (Gbps)'];
    const row = (cells: string[]): string => cells.map((c) => c.padEnd(20)).join('').trimEnd();
    const lines = [row(cols)];
    for (const [name, bySize] of this.stats()) {
      lines.push(name);
      for (const [size, s] of bySize) {
        lines.push(row(['', formatMsgSize(size), String(s.count), s.totalLatencyMs.toFixed(2), s.avgLatencyMs.toFixed(2), s.algbwGbps.toFixed(2), s.busbwGbps.toFixed(2)]));
      }
    }
    return lines.join('\n');
  }

  reset(): void {
    this.data.clear();
  }
}
