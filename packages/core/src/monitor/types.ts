/** One scalar event, DeepSpeed-style: (name, value, step), e.g. ["Train/Samples/train_loss", 2.31, 4096]. */
export type MonitorEvent = readonly [name: string, value: number, step: number];

export interface Monitor {
  writeEvents(events: readonly MonitorEvent[]): void;
  close(): void;
}

/** Where a monitor writes: DeepSpeed's `{enabled, output_path, job_name}` of csv_monitor / tensorboard. */
export interface MonitorOutput {
  outputPath: string;
  jobName: string;
}
