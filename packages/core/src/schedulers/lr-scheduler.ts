// What every LR schedule shares: DeepSpeed's iteration counter (`last_batch_iteration`, -1 before
// the first step), stepping once per applied optimizer step, and writing the new rates into the
// optimizer's param groups.
import { DSError } from '@ds/tensor';

import { configError } from '../config/problems.js';

/** One optimizer param group as a scheduler sees it. */
export interface LrParamGroup {
  lr: number;
  /** Adam-style (beta1, beta2); OneCycle cycles beta1 when present. */
  betas?: readonly [number, number];
}

/** The part of an optimizer a scheduler touches; the engine's optimizers satisfy it. */
export interface SchedulableOptimizer {
  readonly paramGroups: LrParamGroup[];
  /** Construction defaults; OneCycle cycles momentum only when these include `betas`. */
  readonly defaults?: { readonly betas?: readonly [number, number] };
}

export interface SchedulerOptions {
  /** Receives DeepSpeed's warnings (unknown warmup_type, rate read before the first step, ...). */
  warn?: (message: string) => void;
}

export interface SchedulerState {
  last_batch_iteration: number;
}

export interface LRScheduler {
  /** The rates for the current iteration, one per param group. */
  getLr(): number[];
  /** The rates last written into the optimizer. */
  getLastLr(): number[];
  /** Advances one iteration (or jumps to `batchIteration`) and writes the rates into the optimizer. */
  step(batchIteration?: number): void;
  stateDict(): SchedulerState;
  loadStateDict(state: SchedulerState): void;
  readonly lastBatchIteration: number;
}

export abstract class BaseLRScheduler implements LRScheduler {
  protected readonly optimizer: SchedulableOptimizer;
  protected readonly warn: (message: string) => void;
  protected lastLr: number[] | undefined;
  lastBatchIteration: number;

  protected constructor(optimizer: SchedulableOptimizer, lastBatchIteration: number, options: SchedulerOptions) {
    this.optimizer = optimizer;
    this.lastBatchIteration = lastBatchIteration;
    this.warn = options.warn ?? (() => {});
  }

  abstract getLr(): number[];

  getLastLr(): number[] {
    if (this.lastLr === undefined) throw new DSError(`${this.constructor.name}.getLastLr(): no learning rate yet; call step() first (engine.step() does after each optimizer step)`, { code: 'DS_SCHEDULER_NOT_STEPPED' });
    return [...this.lastLr];
  }

  step(batchIteration?: number): void {
    this.lastBatchIteration = batchIteration ?? this.lastBatchIteration + 1;
    this.lastLr = this.writeLr(this.getLr());
  }

  stateDict(): SchedulerState {
    return { last_batch_iteration: this.lastBatchIteration };
  }

  loadStateDict(state: SchedulerState): void {
    if (!Number.isInteger(state?.last_batch_iteration)) {
      throw configError([
        { path: 'last_batch_iteration', value: state?.last_batch_iteration, message: 'expected an integer from stateDict()' },
      ]);
    }
    this.lastBatchIteration = state.last_batch_iteration;
  }

  /** Sets each group's lr and returns what the groups now hold. */
  protected writeLr(lrs: readonly number[]): number[] {
    const groups = this.optimizer.paramGroups;
    groups.forEach((group, i) => {
      if (i < lrs.length) group.lr = lrs[i]!;
    });
    return groups.map((g) => g.lr);
  }

  /** DeepSpeed's `_format_param`: one value for every group, or exactly one per group. */
  protected perGroup(value: number | readonly number[], name: string): number[] {
    const n = this.optimizer.paramGroups.length;
    if (typeof value === 'number') return new Array<number>(n).fill(value);
    if (value.length !== n) {
      throw configError([
        { path: `scheduler.params.${name}`, value, message: `expected one number or a list of ${n} (one per optimizer param group)` },
      ]);
    }
    return [...value];
  }
}
