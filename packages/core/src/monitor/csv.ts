// csv_monitor: one CSV file per event name under <output_path>/<job_name>/, as DeepSpeed writes them:
// the file name is the event name with '/' and ' ' replaced by '_', the header is `step,<last part of
// the name>`, then one `step,value` row per event.
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Monitor, MonitorEvent, MonitorOutput } from './types.js';

export class CsvMonitor implements Monitor {
  readonly logDir: string;
  private readonly started = new Set<string>();

  constructor(out: MonitorOutput) {
    this.logDir = join(out.outputPath, out.jobName);
    mkdirSync(this.logDir, { recursive: true });
  }

  fileFor(name: string): string {
    return join(this.logDir, `${name.replace(/[/ ]/g, '_')}.csv`);
  }

  writeEvents(events: readonly MonitorEvent[]): void {
    for (const [name, value, step] of events) {
      const file = this.fileFor(name);
      if (!this.started.has(file)) {
        if (!existsSync(file)) writeFileSync(file, `step,${name.split('/').pop()}\n`);
        this.started.add(file);
      }
      appendFileSync(file, `${step},${value}\n`);
    }
  }

  close(): void {}
}
