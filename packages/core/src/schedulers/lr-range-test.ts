// LRRangeTest: lr = min_lr * (1 + step_rate * interval), interval = (last_batch_iteration + 1) /
// step_size, floored when lr_range_test_staircase is set (DeepSpeed's lr_schedules.py).
import { BaseLRScheduler, type SchedulableOptimizer, type SchedulerOptions } from './lr-scheduler.js';
import { lrRangeTestParams, type LRRangeTestParams } from './params.js';
import { parseParams } from './parse-params.js';

export class LRRangeTest extends BaseLRScheduler {
  readonly minLrs: number[];
  readonly stepSize: number;
  readonly stepRate: number;
  readonly staircase: boolean;

  constructor(optimizer: SchedulableOptimizer, params: LRRangeTestParams = {}, options: SchedulerOptions = {}) {
    const p = parseParams(lrRangeTestParams, params, 'LRRangeTest');
    super(optimizer, p.last_batch_iteration, options);
    this.minLrs = this.perGroup(p.lr_range_test_min_lr, 'lr_range_test_min_lr');
    this.stepSize = p.lr_range_test_step_size;
    this.stepRate = p.lr_range_test_step_rate;
    this.staircase = p.lr_range_test_staircase;
    if (p.last_batch_iteration === -1) this.lastLr = this.writeLr(this.minLrs);
  }

  getLr(): number[] {
    const raw = (this.lastBatchIteration + 1) / this.stepSize;
    const interval = this.staircase ? Math.floor(raw) : raw;
    return this.minLrs.map((lr) => lr * (1 + this.stepRate * interval));
  }
}
