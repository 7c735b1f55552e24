// The training engine: DeepSpeed's forward / backward / step loop with gradient accumulation, loss
// scaling, clipping, schedulers, counters, monitors and rank-0 logging. Model states (flat buffers,
// gradient reduction, the optimizer step) live in a ModelStateManager: stage 0 here, ZeRO in
// @ds/zero. Compute is synchronous; communication is awaited, so backward() and step() are async.
import { backward as runBackward, DSError, freeGraph, full, type Module, type Runtime, type Tensor } from '@ds/tensor';

import type { Distributed } from '../comm/init.js';
import type { CommsLogger } from '../comm/logger.js';
import type { ParallelGroups } from '../comm/topology.js';
import type { DSConfig } from '../config/core-sections.js';
import type { MonitorMaster } from '../monitor/index.js';
import type { Log } from '../monitor/log.js';
import { EngineProfiler } from '../profiling/engine-profiler.js';
import type { StepProfile } from '../profiling/report.js';
import { castInputsHalf } from '../precision/auto-cast.js';
import type { LossScaler } from '../precision/index.js';
import type { Optimizer } from '../optim/types.js';
import type { LRScheduler } from '../schedulers/index.js';
import { loadEngineCheckpoint, saveEngineCheckpoint, type LoadCheckpointOptions, type LoadCheckpointResult, type SaveCheckpointOptions } from './checkpoint.js';
import { applyActivationCheckpointing } from './activation-checkpointing.js';
import { engineState, memoryUsageLines, stateLines, ThroughputTimer } from './reporting.js';
import { Timers } from './timers.js';
import type { ModelStateManager, ParamDtype } from './types.js';

export interface BatchInfo {
  trainBatchSize: number;
  trainMicroBatchSizePerGpu: number;
  gradientAccumulationSteps: number;
}

export interface EngineParts {
  module: Module;
  optimizer: Optimizer;
  lrScheduler: LRScheduler | null;
  state: ModelStateManager;
  lossScaler: LossScaler;
  /** The validated ds_config. */
  config: DSConfig;
  batch: BatchInfo;
  dist: Distributed | null;
  /** The topology and this rank's groups; the data-parallel group drives reduction, batch rules and checkpoints. */
  groups: ParallelGroups;
  runtime: Runtime;
  /** The device the model states live on ('cpu', 'sim', 'cuda'); inputs to forward() must be there too. */
  device: string;
  paramDtype: ParamDtype;
  monitor: MonitorMaster;
  /** DeepSpeed's comms_logger, attached to the data-parallel group when enabled. */
  commsLogger: CommsLogger | null;
  /** Rank 0's log lines, with levels filtered by DS_LOG_LEVEL (a no-op on other ranks). */
  log: Log;
  /** Releases the optimizer-state storages initialize() allocated. */
  releaseState?: () => void;
}

export class Engine {
  readonly module: Module;
  readonly optimizer: Optimizer;
  readonly lrScheduler: LRScheduler | null;
  readonly config: DSConfig;
  readonly timers = new Timers();
  globalSteps = 0;
  globalSamples = 0;
  microSteps = 0;
  skippedSteps = 0;
  private lastGradNorm = NaN;
  private stepApplied = false;
  private accumulatedLoss = 0;
  private destroyed = false;
  /** timers.throughput: DeepSpeed's samples/s line every steps_per_print steps. */
  private readonly throughput: ThroughputTimer | null;
  /** Unmarks the layers activation_checkpointing marked. */
  private uncheckpoint: () => void = () => {};
  /** flops_profiler: times and counts the step at profile_step (rank 0 only). */
  private readonly profiler: EngineProfiler | null;

  constructor(private readonly parts: EngineParts) {
    this.module = parts.module;
    this.optimizer = parts.optimizer;
    this.lrScheduler = parts.lrScheduler;
    this.config = parts.config;
    try {
      this.uncheckpoint = applyActivationCheckpointing(parts.module, this.config.activation_checkpointing, parts.log, {
        model: parts.groups.model,
        device: parts.device,
        warn: (m) => parts.log(m, 'warn'),
      });
    } catch (err) {
      this.destroy(); // initialize() built the model states already: give them back
      throw err;
    }
    const { degrees } = parts.groups.topology;
    this.profiler = EngineProfiler.create(this.config.flops_profiler, {
      module: parts.module, rank: this.rank, worldSize: this.worldSize, dataParallelSize: degrees.data, modelParallelSize: degrees.model,
      microBatch: parts.batch.trainMicroBatchSizePerGpu, runtime: parts.runtime, device: parts.device, paramDtype: parts.paramDtype, log: parts.log,
    });
    this.throughput = this.config.timers.throughput.enabled ? new ThroughputTimer(parts.batch.trainBatchSize, this.config.steps_per_print) : null;
    if (this.config.dump_state) for (const line of stateLines('DeepSpeedEngine', engineState(this))) parts.log(line);
  }

  get rank(): number {
    return this.parts.dist?.rank ?? 0;
  }
  get worldSize(): number {
    return this.parts.dist?.size ?? 1;
  }
  get dpWorldSize(): number {
    return this.parts.groups.topology.degrees.data;
  }
  /** The pipe x data x model topology and this rank's group on each axis. */
  get groups(): ParallelGroups {
    return this.parts.groups;
  }
  get localRank(): number {
    return this.parts.dist?.localRank ?? 0;
  }
  get zeroStage(): number {
    return this.parts.state.stage;
  }
  get paramDtype(): ParamDtype {
    return this.parts.paramDtype;
  }
  get runtime(): Runtime {
    return this.parts.runtime;
  }
  /** The device the engine trains on (DeepSpeed's engine.device). */
  get device(): string {
    return this.parts.device;
  }
  get dist(): Distributed | null {
    return this.parts.dist;
  }
  get lossScale(): number {
    return this.parts.lossScaler.lossScale;
  }
  /** @internal the model-state manager (for @ds/zero tests and tools). */
  get stateManager(): ModelStateManager {
    return this.parts.state;
  }

  trainBatchSize(): number {
    return this.parts.batch.trainBatchSize;
  }
  trainMicroBatchSizePerGpu(): number {
    return this.parts.batch.trainMicroBatchSizePerGpu;
  }
  gradientAccumulationSteps(): number {
    return this.parts.batch.gradientAccumulationSteps;
  }

  isGradientAccumulationBoundary(): boolean {
    return (this.microSteps + 1) % this.gradientAccumulationSteps() === 0;
  }

  private alive(op: string): void {
    if (this.destroyed) throw new DSError(`engine.${op}: the engine was destroyed; call initialize() again for a new engine`, { code: 'DS_ENGINE_DESTROYED' });
  }

  /** Runs the wrapped module (with its hooks). */
  forward<Out>(...args: unknown[]): Out {
    this.alive('forward');
    this.seeMemory('Engine before forward');
    this.throughput?.start();
    // fp16.auto_cast: floating-point inputs go in as f16 (DeepSpeed's _cast_inputs_half).
    const inputs = this.config.fp16.enabled && this.config.fp16.auto_cast ? (castInputsHalf(args) as unknown[]) : args;
    this.profiler?.begin('forward', this.globalSteps);
    const out = this.timers.time('forward', () => (this.module.call as (...a: unknown[]) => Out)(...inputs));
    this.profiler?.end('forward');
    this.seeMemory('Engine after forward');
    return out;
  }

  /**
   * Backpropagates `loss` scaled by lossScale / gradient_accumulation_steps (DeepSpeed's
   * scale_wrt_gas), frees its graph and, on the boundary, waits for the gradient reductions.
   * Returns the unscaled loss value.
   */
  async backward(loss: Tensor): Promise<number> {
    this.alive('backward');
    this.seeMemory('Engine before backward');
    const boundary = this.isGradientAccumulationBoundary();
    const value = loss.item();
    this.accumulatedLoss += value / this.gradientAccumulationSteps();
    const seed = full(loss.shape, this.parts.lossScaler.lossScale / this.gradientAccumulationSteps(), { dtype: loss.dtype as 'f32' });
    this.parts.state.beforeBackward(boundary);
    this.profiler?.begin('backward', this.globalSteps);
    try {
      this.timers.time('backward', () => runBackward(loss, seed));
    } finally {
      seed.dispose();
      freeGraph(loss);
    }
    await this.timers.timeAsync('backward_allreduce', () => this.parts.state.afterBackward());
    this.profiler?.end('backward');
    this.seeMemory('Engine after backward');
    return value;
  }

  /** Applies the optimizer on accumulation boundaries; otherwise only counts the micro step. */
  async step(): Promise<void> {
    this.alive('step');
    this.seeMemory('Engine before step');
    if (!this.isGradientAccumulationBoundary()) {
      this.microSteps += 1;
      this.afterStep(false);
      return;
    }
    const clip = this.config.gradient_clipping;
    const scaler = this.parts.lossScaler;
    this.profiler?.begin('step', this.globalSteps);
    const out = await this.timers.timeAsync('step', () => this.parts.state.step({ lossScale: scaler.lossScale, clip }));
    this.profiler?.end('step');
    const skip = scaler.update(out.overflow);
    this.stepApplied = !skip;
    this.lastGradNorm = out.gradNorm;
    if (skip) this.skippedSteps += 1;
    else this.lrScheduler?.step();
    this.parts.state.zeroGrad();
    this.globalSteps += 1;
    this.globalSamples += this.trainBatchSize();
    this.microSteps += 1;
    this.report(this.accumulatedLoss);
    this.accumulatedLoss = 0;
    this.afterStep(true);
  }

  /** The throughput line (on a reporting boundary) and memory_breakdown's last report of the step. */
  private afterStep(boundary: boolean): void {
    const tracker = this.parts.runtime.tracker;
    const line = this.throughput?.stop(boundary, { live: tracker.liveBytes('cpu'), peak: tracker.peakBytes('cpu') });
    if (line) this.parts.log(line);
    this.seeMemory('Engine after step');
  }

  /** memory_breakdown: DeepSpeed's see_memory_usage(message). */
  private seeMemory(message: string): void {
    if (this.config.memory_breakdown) for (const line of memoryUsageLines(this.parts.runtime.tracker, 'cpu', message)) this.parts.log(line);
  }

  private report(loss: number): void {
    if (this.rank !== 0) return;
    const mon = this.parts.monitor;
    if (mon.enabled) {
      const events: [string, number, number][] = [
        ['Train/Samples/train_loss', loss, this.globalSamples],
        ['Train/Samples/lr', this.getLr()[0] ?? 0, this.globalSamples],
      ];
      if (this.parts.paramDtype === 'f16') events.push(['Train/Samples/loss_scale', this.lossScale, this.globalSamples]);
      if (this.config.wall_clock_breakdown) {
        for (const [name, ms] of Object.entries(this.timers.last())) events.push([`Train/Samples/elapsed_time_ms_${name}`, ms, this.globalSamples]);
      }
      mon.writeEvents(events);
    }
    const every = this.config.steps_per_print;
    if (every !== null && this.globalSteps % every === 0) {
      const mom = this.getMom();
      this.parts.log(`step=${this.globalSteps}, skipped=${this.skippedSteps}, lr=[${this.getLr().join(', ')}], mom=[${mom.map((m) => (Array.isArray(m) ? `(${m.join(', ')})` : m)).join(', ')}]`);
      if (this.config.wall_clock_breakdown) this.parts.log(this.timers.summary());
      if (this.parts.commsLogger) this.parts.log(this.parts.commsLogger.summary());
    }
  }

  /** flops_profiler's profile of profile_step on rank 0 once that step has run; null before, elsewhere and when off. */
  get flopsProfile(): StepProfile | null {
    return this.profiler?.lastProfile ?? null;
  }

  /** The comms_logger of this engine (null unless `comms_logger.enabled`). */
  get commsLogger(): CommsLogger | null {
    return this.parts.commsLogger;
  }

  getLr(): number[] {
    return this.lrScheduler ? this.lrScheduler.getLr() : this.optimizer.paramGroups.map((g) => g.lr);
  }

  /** betas for Adam-like optimizers, momentum for SGD (DeepSpeed's get_mom). */
  getMom(): Array<number | readonly number[]> {
    return this.optimizer.paramGroups.map((g) => g.betas ?? g.momentum ?? 0);
  }

  getGlobalGradNorm(): number {
    return this.lastGradNorm;
  }

  wasStepApplied(): boolean {
    return this.stepApplied;
  }

  /** Collective: every rank must call it. */
  saveCheckpoint(dir: string, opts: SaveCheckpointOptions = {}): Promise<string> {
    this.alive('saveCheckpoint');
    return saveEngineCheckpoint(this, this.parts, dir, opts);
  }

  /** Collective. Returns the loaded path and client state, or nulls when there is nothing to load. */
  loadCheckpoint(dir: string, opts: LoadCheckpointOptions = {}): Promise<LoadCheckpointResult> {
    this.alive('loadCheckpoint');
    return loadEngineCheckpoint(this, this.parts, dir, opts);
  }

  /**
   * Releases the engine's buffers and closes its monitors. The module stays usable: its parameters
   * get storage of their own again. The process group stays the caller's.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.uncheckpoint();
    this.parts.state.destroy();
    this.parts.releaseState?.();
    this.parts.monitor.close();
  }
}
