// The engine's optional rank-0 reports, each switched by a ds_config key as in DeepSpeed:
// - timers.throughput (on by default): DeepSpeed's ThroughputTimer (utils/timer.py). Each micro
//   step is timed from forward to step(); the first `startStep` optimizer steps are left out (warm-up);
//   every steps_per_print optimizer steps it logs samples per second and the tracker's memory.
// - memory_breakdown: DeepSpeed's see_memory_usage around forward, backward and step, from the
//   memory tracker (live and peak bytes, then live bytes per category), then a new peak window.
// - dump_state: DeepSpeed's print_configuration(engine) at start-up: the engine's state, sorted.
import { performance } from 'node:perf_hooks';

import { MEMORY_CATEGORIES, type MemoryTracker } from '@ds/tensor';

import { formatMsgSize } from '../comm/logger.js';
import type { Engine } from './engine.js';

const GIB = 1024 ** 3;
const gib = (bytes: number) => Math.round((bytes / GIB) * 100) / 100;

/** DeepSpeed's ThroughputTimer for one engine. */
export class ThroughputTimer {
  private started = false;
  private startTime = 0;
  private microSteps = 0;
  private globalSteps = 0;
  private totalMs = 0;
  private stepMs = 0;

  constructor(
    private readonly batchSize: number,
    private readonly stepsPerOutput: number | null,
    private readonly startStep = 2,
  ) {}

  /** At the start of a micro step's forward. */
  start(): void {
    this.started = true;
    if (this.globalSteps >= this.startStep) this.startTime = performance.now();
  }

  /**
   * At the end of step(): counts the micro step (and the optimizer step on a boundary) and, on a
   * reporting boundary, returns DeepSpeed's throughput line.
   */
  stop(globalStep: boolean, memory: { live: number; peak: number }): string | null {
    if (!this.started) return null;
    this.started = false;
    this.microSteps += 1;
    if (globalStep) this.globalSteps += 1;
    if (this.startTime <= 0) return null;
    const ms = performance.now() - this.startTime;
    this.startTime = 0;
    this.totalMs += ms;
    this.stepMs += ms;
    if (!globalStep) return null;
    const stepSeconds = this.stepMs / 1000;
    this.stepMs = 0;
    if (this.stepsPerOutput === null || this.globalSteps % this.stepsPerOutput !== 0) return null;
    return (
      `epoch=0/micro_step=${this.microSteps}/global_step=${this.globalSteps}, RunningAvgSamplesPerSec=${this.avgSamplesPerSec()}, ` +
      `CurrSamplesPerSec=${this.batchSize / (stepSeconds + 1e-5)}, MemAllocated=${gib(memory.live)}GB, MaxMemAllocated=${gib(memory.peak)}GB`
    );
  }

  /** Samples per second over the optimizer steps after the warm-up. */
  avgSamplesPerSec(): number {
    const steps = this.globalSteps - this.startStep;
    if (steps <= 0 || this.totalMs <= 0) return Number.NEGATIVE_INFINITY;
    return this.batchSize / (this.totalMs / 1000 / steps);
  }
}

/** DeepSpeed's see_memory_usage lines for `device`, then a new peak window (as it resets the peak stats). */
export function memoryUsageLines(tracker: MemoryTracker, device: string, message: string): string[] {
  const live = tracker.liveBytes(device);
  const peak = tracker.peakBytes(device);
  const byCategory = MEMORY_CATEGORIES.map((c) => `${c} ${formatMsgSize(tracker.liveBytes(device, c))}`).join(', ');
  tracker.resetPeak(device);
  return [message, `MA ${gib(live)} GB Max_MA ${gib(peak)} GB (${formatMsgSize(live)}, peak ${formatMsgSize(peak)}) | ${byCategory}`];
}

/** print_configuration(engine, "DeepSpeedEngine"): one `name ..... value` line per entry, sorted by name. */
export function stateLines(title: string, state: Readonly<Record<string, unknown>>): string[] {
  const lines = [`${title}:`];
  for (const name of Object.keys(state).sort()) {
    const v = state[name];
    lines.push(`  ${name} ${'.'.repeat(Math.max(1, 29 - name.length))} ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return lines;
}

/** What dump_state prints: the engine's topology, batch, precision, counters and optimizer, and the config. */
export function engineState(engine: Engine): Record<string, unknown> {
  return {
    global_rank: engine.rank,
    local_rank: engine.localRank,
    world_size: engine.worldSize,
    dp_world_size: engine.dpWorldSize,
    zero_optimization_stage: engine.zeroStage,
    param_dtype: engine.paramDtype,
    train_batch_size: engine.trainBatchSize(),
    train_micro_batch_size_per_gpu: engine.trainMicroBatchSizePerGpu(),
    gradient_accumulation_steps: engine.gradientAccumulationSteps(),
    global_steps: engine.globalSteps,
    global_samples: engine.globalSamples,
    micro_steps: engine.microSteps,
    skipped_steps: engine.skippedSteps,
    loss_scale: engine.lossScale,
    optimizer: engine.optimizer.type,
    lr: engine.getLr(),
    lr_scheduler: engine.lrScheduler?.constructor.name ?? null,
    module: engine.module.constructor.name,
    ds_config: engine.config,
  };
}
