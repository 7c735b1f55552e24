// WarmupLR, WarmupDecayLR and WarmupCosineLR with DeepSpeed's formulas (lr_schedules.py). `it` below
// is last_batch_iteration, N = max(2, warmup_num_steps), T = total_num_steps.
//   warmup factor w(it) = ln(it + 1) / ln(N)   (log)     or   it / N   (linear),   for it < N
//   WarmupLR:       lr = min + (max - min) * w(it), then max
//   WarmupDecayLR:  lr = min + (max - min) * w(it), then (max - min) * max(0, (T - it) / max(1, T - N)) + min
//   WarmupCosineLR: lr = lr0 * (r + w(it) * (1 - r)) during warmup (r = warmup_min_ratio), then
//                   lr0 * max(0, c + (1 - c) * (1 + cos(pi * (it - N + 1) / (T - N))) / 2) (c = cos_min_ratio)
import { configError } from '../config/problems.js';
import { BaseLRScheduler, type SchedulableOptimizer, type SchedulerOptions } from './lr-scheduler.js';
import {
  warmupCosineLrParams,
  warmupDecayLrParams,
  warmupLrParams,
  type WarmupCosineLRParams,
  type WarmupDecayLRParams,
  type WarmupLRParams,
} from './params.js';
import { parseParams } from './parse-params.js';

type WarmupType = 'log' | 'linear';

function warmupFactor(type: WarmupType, it: number, steps: number): number {
  return type === 'log' ? Math.log(it + 1) / Math.log(steps) : it / steps;
}

export class WarmupLR extends BaseLRScheduler {
  readonly minLrs: number[];
  readonly maxLrs: number[];
  readonly warmupNumSteps: number;
  readonly warmupType: WarmupType;

  constructor(optimizer: SchedulableOptimizer, params: WarmupLRParams = {}, options: SchedulerOptions = {}) {
    const p = parseParams(warmupLrParams, params, 'WarmupLR');
    super(optimizer, p.last_batch_iteration, options);
    this.minLrs = this.perGroup(p.warmup_min_lr, 'warmup_min_lr');
    this.maxLrs = this.perGroup(p.warmup_max_lr, 'warmup_max_lr');
    // DeepSpeed clamps the warmup to at least 2 steps (ln(1) would divide by zero).
    this.warmupNumSteps = Math.max(2, p.warmup_num_steps);
    if (p.warmup_type !== 'log' && p.warmup_type !== 'linear') {
      this.warn(`Using unknown warmup_type: ${p.warmup_type}. The increasing function is set to default (log)`);
      this.warmupType = 'log';
    } else {
      this.warmupType = p.warmup_type;
    }
    if (p.last_batch_iteration === -1) this.lastLr = this.writeLr(this.minLrs);
  }

  getLr(): number[] {
    if (this.lastBatchIteration < 0) {
      this.warn('Attempting to get learning rate from scheduler before it has started');
      return [...this.minLrs];
    }
    const gamma = this.gamma();
    return this.minLrs.map((min, i) => min + (this.maxLrs[i]! - min) * gamma);
  }

  protected gamma(): number {
    const it = this.lastBatchIteration;
    return it < this.warmupNumSteps ? warmupFactor(this.warmupType, it, this.warmupNumSteps) : 1.0;
  }
}

export class WarmupDecayLR extends WarmupLR {
  readonly totalNumSteps: number;

  constructor(optimizer: SchedulableOptimizer, params: WarmupDecayLRParams, options: SchedulerOptions = {}) {
    const p = parseParams(warmupDecayLrParams, params, 'WarmupDecayLR');
    const { total_num_steps, ...warmup } = p;
    super(optimizer, warmup, options);
    this.totalNumSteps = total_num_steps;
    if (total_num_steps < this.warmupNumSteps) {
      this.warn(`total_num_steps ${total_num_steps} is less than warmup_num_steps ${p.warmup_num_steps}`);
    }
  }

  protected override gamma(): number {
    const it = this.lastBatchIteration;
    if (it < this.warmupNumSteps) return warmupFactor(this.warmupType, it, this.warmupNumSteps);
    return Math.max(0, (this.totalNumSteps - it) / Math.max(1, this.totalNumSteps - this.warmupNumSteps));
  }
}

export class WarmupCosineLR extends BaseLRScheduler {
  readonly totalNumSteps: number;
  readonly warmupNumSteps: number;
  readonly warmupMinRatio: number;
  readonly cosMinRatio: number;
  readonly warmupType: WarmupType;
  /** The optimizer's lr per group at construction; every ratio multiplies these. */
  readonly orgLrs: number[];

  constructor(optimizer: SchedulableOptimizer, params: WarmupCosineLRParams, options: SchedulerOptions = {}) {
    const p = parseParams(warmupCosineLrParams, params, 'WarmupCosineLR');
    super(optimizer, p.last_batch_iteration, options);
    this.totalNumSteps = p.total_num_steps;
    this.warmupNumSteps = Math.max(2, p.warmup_num_steps);
    this.warmupMinRatio = p.warmup_min_ratio;
    this.cosMinRatio = p.cos_min_ratio;
    this.warmupType = p.warmup_type;
    if (this.totalNumSteps === this.warmupNumSteps) {
      // Deliberate difference: DeepSpeed divides by T - N and raises ZeroDivisionError on the first
      // step after warmup; we refuse the configuration before training starts.
      throw configError([
        {
          path: 'scheduler.params.total_num_steps',
          value: p.total_num_steps,
          message: `must differ from max(2, warmup_num_steps) = ${this.warmupNumSteps}; the cosine phase would have zero length`,
        },
      ]);
    }
    if (this.totalNumSteps < this.warmupNumSteps) {
      this.warn(`total_num_steps ${this.totalNumSteps} is less than warmup_num_steps ${p.warmup_num_steps}`);
    }
    this.orgLrs = optimizer.paramGroups.map((g) => g.lr);
    // Deliberate difference: DeepSpeed writes a one-element [0.0] here, which zeroes only the first
    // param group's lr; we zero every group, which is what the schedule means.
    if (p.last_batch_iteration === -1) this.lastLr = this.writeLr(this.orgLrs.map(() => 0));
  }

  /** The factor applied to each group's initial lr at the current iteration. */
  getLrRatio(): number {
    const it = this.lastBatchIteration;
    if (it < 0) return 0;
    if (it < this.warmupNumSteps) {
      const w = warmupFactor(this.warmupType, it, this.warmupNumSteps);
      return this.warmupMinRatio + w * (1 - this.warmupMinRatio);
    }
    const progress = (it - this.warmupNumSteps + 1) / (this.totalNumSteps - this.warmupNumSteps);
    const cosine = (1 + Math.cos(Math.PI * progress)) / 2;
    return Math.max(0, this.cosMinRatio + (1 - this.cosMinRatio) * cosine);
  }

  getLr(): number[] {
    if (this.lastBatchIteration < 0) {
      this.warn('Attempting to get learning rate from scheduler before it has started');
      return this.orgLrs.map(() => 0);
    }
    const ratio = this.getLrRatio();
    return this.orgLrs.map((lr) => lr * ratio);
  }
}
