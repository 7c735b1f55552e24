// The `scheduler.params` of each built-in LR schedule, with DeepSpeed's names and defaults
// (deepspeed/runtime/lr_schedules.py). DeepSpeed passes params as keyword arguments, so an unknown
// param is a TypeError there; the objects are strict here for the same reason.
import { z } from 'zod';

/** A value per optimizer param group, or one value for all of them (DeepSpeed's `_format_param`). */
const perGroup = z.union([z.number(), z.array(z.number()).min(1)]);
const iteration = z.number().int().min(-1).default(-1);
/** DeepSpeed warns on any other warmup_type and falls back to 'log' (see WarmupLR). */
const warmupType = z.string().default('log');

export const warmupLrParams = z.strictObject({
  warmup_min_lr: perGroup.default(0),
  warmup_max_lr: perGroup.default(0.001),
  warmup_num_steps: z.number().int().min(0).default(1000),
  warmup_type: warmupType,
  last_batch_iteration: iteration,
});

export const warmupDecayLrParams = warmupLrParams.extend({
  total_num_steps: z.number().int().min(1),
});

export const warmupCosineLrParams = z.strictObject({
  total_num_steps: z.number().int().min(1),
  warmup_min_ratio: z.number().min(0).default(0),
  warmup_num_steps: z.number().int().min(0).default(1000),
  cos_min_ratio: z.number().min(0).default(0.0001),
  // Deliberate difference: DeepSpeed's WarmupCosineLR accepts any string here and then fails with an
  // UnboundLocalError on its first step when it is neither 'log' nor 'linear'; we reject it up front.
  warmup_type: z.enum(['log', 'linear']).default('log'),
  last_batch_iteration: iteration,
});

export const oneCycleParams = z.strictObject({
  cycle_min_lr: z.number(),
  cycle_max_lr: z.number(),
  decay_lr_rate: z.number().default(0),
  cycle_first_step_size: z.number().int().min(1).default(2000),
  cycle_second_step_size: z.number().int().min(1).nullable().default(null),
  cycle_first_stair_count: z.number().int().min(0).default(0),
  cycle_second_stair_count: z.number().int().min(0).nullable().default(null),
  decay_step_size: z.number().int().min(0).default(0),
  cycle_momentum: z.boolean().default(true),
  cycle_min_mom: z.number().default(0.8),
  cycle_max_mom: z.number().default(0.9),
  decay_mom_rate: z.number().default(0),
  last_batch_iteration: iteration,
});

export const lrRangeTestParams = z.strictObject({
  lr_range_test_min_lr: perGroup.default(0.001),
  lr_range_test_step_size: z.number().int().min(1).default(2000),
  lr_range_test_step_rate: z.number().default(1.0),
  lr_range_test_staircase: z.boolean().default(false),
  last_batch_iteration: iteration,
});

export type WarmupLRParams = z.input<typeof warmupLrParams>;
export type WarmupDecayLRParams = z.input<typeof warmupDecayLrParams>;
export type WarmupCosineLRParams = z.input<typeof warmupCosineLrParams>;
export type OneCycleParams = z.input<typeof oneCycleParams>;
export type LRRangeTestParams = z.input<typeof lrRangeTestParams>;

/** Params schema per built-in scheduler type; the config schema and createScheduler both read this. */
export const SCHEDULER_PARAMS = {
  WarmupLR: warmupLrParams,
  WarmupDecayLR: warmupDecayLrParams,
  WarmupCosineLR: warmupCosineLrParams,
  OneCycle: oneCycleParams,
  LRRangeTest: lrRangeTestParams,
} as const;
