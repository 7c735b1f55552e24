// Builds a scheduler from the config's `scheduler` section ({type, params}) by table lookup.
import { CORE_SCHEDULER_TYPES, type CoreSchedulerType } from '../config/core-keys.js';
import { nearest } from '../config/levenshtein.js';
import { configError } from '../config/problems.js';
import type { LRScheduler, SchedulableOptimizer, SchedulerOptions } from './lr-scheduler.js';
import { LRRangeTest } from './lr-range-test.js';
import { OneCycle } from './one-cycle.js';
import { WarmupCosineLR, WarmupDecayLR, WarmupLR } from './warmup.js';

type Build = (optimizer: SchedulableOptimizer, params: never, options: SchedulerOptions) => LRScheduler;

const BUILDERS: Record<CoreSchedulerType, Build> = {
  WarmupLR: (o, p, opts) => new WarmupLR(o, p, opts),
  WarmupDecayLR: (o, p, opts) => new WarmupDecayLR(o, p, opts),
  WarmupCosineLR: (o, p, opts) => new WarmupCosineLR(o, p, opts),
  OneCycle: (o, p, opts) => new OneCycle(o, p, opts),
  LRRangeTest: (o, p, opts) => new LRRangeTest(o, p, opts),
};

export interface SchedulerConfig {
  type: string;
  params?: Record<string, unknown>;
}

/** Creates the scheduler `config.type` names (DeepSpeed's names, matched exactly as DeepSpeed does). */
export function createScheduler(optimizer: SchedulableOptimizer, config: SchedulerConfig, options: SchedulerOptions = {}): LRScheduler {
  const build = (BUILDERS as Record<string, Build | undefined>)[config.type];
  if (!build) {
    // DeepSpeed falls back to torch.optim.lr_scheduler.<type>; there is no torch here.
    const suggestion = nearest(config.type, CORE_SCHEDULER_TYPES);
    throw configError([
      {
        path: 'scheduler.type',
        value: config.type,
        message: `must be one of ${CORE_SCHEDULER_TYPES.join(', ')}${suggestion ? `; did you mean '${suggestion}'?` : ''}`,
        ...(suggestion ? { suggestion } : {}),
      },
    ]);
  }
  return build(optimizer, (config.params ?? {}) as never, options);
}
