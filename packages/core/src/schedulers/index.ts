export { BaseLRScheduler } from './lr-scheduler.js';
export type { LRScheduler, LrParamGroup, SchedulableOptimizer, SchedulerOptions, SchedulerState } from './lr-scheduler.js';
export { WarmupLR, WarmupDecayLR, WarmupCosineLR } from './warmup.js';
export { OneCycle } from './one-cycle.js';
export { LRRangeTest } from './lr-range-test.js';
export { createScheduler } from './create.js';
export type { SchedulerConfig } from './create.js';
export { SCHEDULER_PARAMS, warmupLrParams, warmupDecayLrParams, warmupCosineLrParams, oneCycleParams, lrRangeTestParams } from './params.js';
export type { WarmupLRParams, WarmupDecayLRParams, WarmupCosineLRParams, OneCycleParams, LRRangeTestParams } from './params.js';
