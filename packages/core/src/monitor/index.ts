// Monitors chosen by ds_config (csv_monitor, tensorboard); the engine writes through MonitorMaster on
// rank 0 only. wandb and comet need their services and are rejected by the config, not faked here.
import { CsvMonitor } from './csv.js';
import { TensorBoardMonitor } from './tensorboard.js';
import type { Monitor, MonitorEvent } from './types.js';

export interface MonitorSections {
  csv_monitor?: { enabled?: boolean; output_path?: string; job_name?: string };
  tensorboard?: { enabled?: boolean; output_path?: string; job_name?: string };
}

export class MonitorMaster implements Monitor {
  readonly monitors: Monitor[];

  constructor(sections: MonitorSections, rank: number) {
    this.monitors = [];
    if (rank !== 0) return;
    const out = (s: { output_path?: string; job_name?: string }) => ({ outputPath: s.output_path || '.', jobName: s.job_name || 'DeepSpeedJobName' });
    if (sections.csv_monitor?.enabled) this.monitors.push(new CsvMonitor(out(sections.csv_monitor)));
    if (sections.tensorboard?.enabled) this.monitors.push(new TensorBoardMonitor(out(sections.tensorboard)));
  }

  get enabled(): boolean {
    return this.monitors.length > 0;
  }

  writeEvents(events: readonly MonitorEvent[]): void {
    for (const m of this.monitors) m.writeEvents(events);
  }

  close(): void {
    for (const m of this.monitors) m.close();
  }
}

export { CsvMonitor } from './csv.js';
export { TensorBoardMonitor, crc32c, maskedCrc, encodeEvent, encodeRecord } from './tensorboard.js';
export type { Monitor, MonitorEvent, MonitorOutput } from './types.js';
export { createLog, logLevelEnabled, silentLog } from './log.js';
export type { Log } from './log.js';
// The flops profiler lives in src/profiling; it is exported here, beside the other observers of a run.
export * from '../profiling/index.js';
