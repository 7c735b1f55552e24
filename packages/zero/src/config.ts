// The `zero_optimization` section: DeepSpeed's keys and defaults (runtime/zero/config.py; sizes are
// element counts). Unknown keys are errors (the object is strict, so a typo gets the nearest key
// suggested by core's validator). Keys DeepSpeed knows but this package does not build (the
// deprecated cpu_offload switches, ZeRO++, MiCS, elastic checkpoints, ...) are rejected by name when set to anything but "off"; keys
// whose DeepSpeed effect does not exist under this design are accepted with a warning saying so
// (noEffectNotes, handed to core's validator as config notes).
import { attachConfigNotes, DSConfigError, type ConfigNote } from '@ds/core';
import { z } from 'zod';

const count = z.number().min(0);
const flag = (value: boolean) => z.boolean().default(value);

const offloadParam = z.strictObject({
  device: z.enum(['none', 'cpu', 'nvme']).default('none'),
  nvme_path: z.string().nullable().default(null),
  buffer_count: z.number().int().min(0).default(5),
  buffer_size: count.default(1e8),
  max_in_cpu: count.default(1e9),
  pin_memory: flag(false),
});

const offloadOptimizer = z.strictObject({
  device: z.enum(['none', 'cpu', 'nvme']).default('none'),
  nvme_path: z.string().nullable().default(null),
  buffer_count: z.number().int().min(0).default(4),
  pin_memory: flag(false),
  pipeline_read: flag(false),
  pipeline_write: flag(false),
  fast_init: flag(false),
  ratio: z.number().min(0).max(1).default(1),
});

/** Deprecated or alternative spellings DeepSpeed accepts, mapped to the canonical key. */
export const ZERO_ALIASES: Readonly<Record<string, string>> = {
  stage3_gather_fp16_weights_on_model_save: 'stage3_gather_16bit_weights_on_model_save',
  gather_16bit_weights_on_model_save: 'stage3_gather_16bit_weights_on_model_save',
  prefetch_bucket_size: 'stage3_prefetch_bucket_size',
  param_persistence_threshold: 'stage3_param_persistence_threshold',
  model_persistence_threshold: 'stage3_model_persistence_threshold',
  max_live_parameters: 'stage3_max_live_parameters',
  max_reuse_distance: 'stage3_max_reuse_distance',
  // DeepSpeed's pydantic model populates fields by name as well as by alias.
  module_granularity_threshold: 'stage3_module_granularity_threshold',
  use_all_reduce_for_fetch_params: 'stage3_use_all_reduce_for_fetch_params',
};

const BOOLEAN_TARGETS = new Set(['stage3_gather_16bit_weights_on_model_save', 'stage3_use_all_reduce_for_fetch_params']);

const shape = {
  stage: z.number().int().min(0).max(3).default(0),
  contiguous_gradients: flag(true),
  reduce_scatter: flag(true),
  reduce_bucket_size: count.default(5e8),
  use_multi_rank_bucket_allreduce: flag(true),
  allgather_partitions: flag(true),
  allgather_bucket_size: count.default(5e8),
  /** null: true for stage 3, false otherwise (DeepSpeed's rule). */
  overlap_comm: z.boolean().nullable().default(null),
  load_from_fp32_weights: flag(true),
  elastic_checkpoint: flag(false),
  offload_param: offloadParam.nullable().default(null),
  offload_optimizer: offloadOptimizer.nullable().default(null),
  sub_group_size: count.default(1e9),
  stage3_prefetch_bucket_size: count.default(5e7),
  stage3_param_persistence_threshold: count.default(1e5),
  stage3_model_persistence_threshold: count.default(Number.MAX_SAFE_INTEGER),
  stage3_max_live_parameters: count.default(1e9),
  stage3_max_reuse_distance: count.default(1e9),
  stage3_gather_16bit_weights_on_model_save: flag(false),
  stage3_module_granularity_threshold: count.default(0),
  stage3_use_all_reduce_for_fetch_params: flag(false),
  ignore_unused_parameters: flag(true),
  legacy_stage1: flag(false),
  round_robin_gradients: flag(false),
  zero_hpz_partition_size: z.number().int().min(1).default(1),
  zero_quantized_weights: flag(false),
  zero_quantized_nontrainable_weights: flag(false),
  zero_quantized_gradients: flag(false),
  zeropp_loco_param: z.record(z.string(), z.unknown()).nullable().default(null),
  mics_shard_size: z.number().int().default(-1),
  mics_hierarchical_params_gather: flag(false),
  memory_efficient_linear: flag(true),
  pipeline_loading_checkpoint: flag(false),
  override_module_apply: flag(true),
  log_trace_cache_warnings: flag(false),
  // Deprecated offload switches (DeepSpeed maps them onto offload_optimizer / offload_param).
  cpu_offload: z.boolean().optional(),
  cpu_offload_param: z.boolean().optional(),
  cpu_offload_use_pin_memory: z.boolean().optional(),
  ...Object.fromEntries(Object.entries(ZERO_ALIASES).map(([k, to]) => [k, BOOLEAN_TARGETS.has(to) ? z.boolean().optional() : count.optional()])),
};

type Raw = z.infer<z.ZodObject<typeof shape>>;

/** Keys whose non-default values ask for something this package does not build, with the reason. */
function unbuiltProblems(c: Raw): [string, string][] {
  const out: [string, string][] = [];
  // offload_optimizer is accepted: its device names an offload tier a registered plugin contributes
  // (core's plugin requirements name @ds/offload-nvme when none is), which receives the section.
  // offload_param is accepted at stage 3 (param-offload.ts), the only stage that partitions parameters.
  const dev = c.offload_param?.device;
  if (dev && dev !== 'none' && c.stage !== 3) out.push(['offload_param.device', `offload_param to '${dev}' (parameter offload) needs stage 3, where parameters are partitioned (stage is ${c.stage}); set zero_optimization.stage to 3 or remove offload_param`]);
  if (c.cpu_offload === true) out.push(['cpu_offload', "cpu_offload (deprecated form of offload_optimizer.device 'cpu') is not built in @ds/zero"]);
  if (c.cpu_offload_param === true) out.push(['cpu_offload_param', "cpu_offload_param (deprecated form of offload_param.device 'cpu') is not built in @ds/zero"]);
  const on: [keyof Raw, string][] = [
    ['zero_quantized_weights', 'ZeRO++ quantized weights (qwZ) are not built'],
    ['zero_quantized_nontrainable_weights', 'ZeRO++ quantized non-trainable weights are not built'],
    ['zero_quantized_gradients', 'ZeRO++ quantized gradients (qgZ) are not built'],
    ['mics_hierarchical_params_gather', 'MiCS hierarchical gathers are not built'],
    ['elastic_checkpoint', 'elastic checkpoints are not built; checkpoints of @ds/zero load on any number of ranks without it'],
    ['legacy_stage1', 'legacy_stage1 was removed from DeepSpeed (>= 0.5.9) and is not supported'],
    ['stage3_use_all_reduce_for_fetch_params', 'fetching parameters with all-reduce is not built; stage 3 gathers with all-gather'],
    ['round_robin_gradients', 'round-robin gradient ordering (an offload optimisation) is not built'],
    ['pipeline_loading_checkpoint', 'pipeline_loading_checkpoint is not built'],
  ];
  for (const [key, why] of on) if (c[key] === true) out.push([key, why]);
  if (c.zero_hpz_partition_size > 1) out.push(['zero_hpz_partition_size', 'ZeRO++ hierarchical partitioning (hpZ) is not built; use 1']);
  if (c.zeropp_loco_param !== null) out.push(['zeropp_loco_param', 'ZeRO++ LoCo is not built']);
  if (c.mics_shard_size > 0) out.push(['mics_shard_size', 'MiCS sharding is not built; use -1']);
  if (c.stage3_module_granularity_threshold > 0) out.push(['stage3_module_granularity_threshold', 'fetching small modules as one unit is not built; use 0']);
  return out;
}

/** The config with each alias's value moved to its canonical key. */
function resolveAliases(c: Raw): Raw {
  const out: Record<string, unknown> = { ...c };
  for (const [alias, key] of Object.entries(ZERO_ALIASES)) {
    if (out[alias] !== undefined) out[key] = out[alias];
    delete out[alias];
  }
  return out as Raw;
}

const OFFLOAD_DEFAULTS = { offload_param: offloadParam.parse({}), offload_optimizer: offloadOptimizer.parse({}) } as Record<string, Record<string, unknown>>;

/**
 * Keys accepted although they change nothing here, each with the reason (DeepSpeed's effect does not
 * exist under this design, or depends on a feature rejected above). `c` is the raw section.
 */
export function noEffectNotes(c: Raw): ConfigNote[] {
  const notes: ConfigNote[] = [];
  // DeepSpeed's zero.Init swaps torch's F.linear for a version that saves no gathered weight for
  // backward. Our linear saves the Parameter itself, whose storage stage 3 releases after forward and
  // gathers again before backward, so no gathered weight outlives forward either way.
  if (c.memory_efficient_linear === false) {
    notes.push({ path: 'memory_efficient_linear', value: false, message: "'memory_efficient_linear' has no effect: stage 3 never keeps a gathered weight alive for backward here (linear saves the Parameter, which is released after forward and gathered again for backward)" });
  }
  // DeepSpeed's zero.Init wraps torch.nn.Module.apply so that functions applied to a module see its
  // gathered parameters; @ds/tensor's Module has no apply(), and models initialise each parameter as
  // they create it (zeroInit partitions it then).
  if (c.override_module_apply === false) {
    notes.push({ path: 'override_module_apply', value: false, message: "'override_module_apply' has no effect: @ds/tensor's Module has no apply() to wrap; models initialise each parameter as they create it" });
  }
  // DeepSpeed's stages 1-2 reduce a bucket's per-owner ranges either by all-reducing ranges grouped
  // per owner (true) or by one reduce to each owner (false): a choice of messages with the same
  // averaged block on every owner. Here every unit is one reduce-scatter (or, with reduce_scatter
  // false, one all-reduce) through core's gradient reduction, whatever this key says.
  if (c.use_multi_rank_bucket_allreduce === false) {
    notes.push({ path: 'use_multi_rank_bucket_allreduce', value: false, message: "'use_multi_rank_bucket_allreduce' has no effect: each partition unit is reduced in one collective (reduce-scatter, or all-reduce with reduce_scatter false); DeepSpeed's setting chooses a message pattern with the same result" });
  }
  if (c.cpu_offload_use_pin_memory !== undefined) {
    notes.push({ path: 'cpu_offload_use_pin_memory', value: c.cpu_offload_use_pin_memory, message: "'cpu_offload_use_pin_memory' has no effect: it is deprecated (use offload_param / offload_optimizer pin_memory) and DeepSpeed ignores it too" });
  }
  const deprecatedGather = (c as Record<string, unknown>).stage3_gather_fp16_weights_on_model_save;
  if (deprecatedGather !== undefined) {
    notes.push({ path: 'stage3_gather_fp16_weights_on_model_save', value: deprecatedGather, message: "'stage3_gather_fp16_weights_on_model_save' is deprecated; it is read as 'stage3_gather_16bit_weights_on_model_save', rename it" });
  }
  for (const key of ['offload_param', 'offload_optimizer'] as const) {
    const section = c[key] as Record<string, unknown> | null;
    if (!section || section.device !== 'none') continue;
    for (const [k, v] of Object.entries(section)) {
      if (k === 'device' || v === OFFLOAD_DEFAULTS[key]![k]) continue;
      notes.push({ path: `${key}.${k}`, value: v, message: `'${key}.${k}' has no effect: ${key}.device is 'none' (offload to 'cpu' or 'nvme' needs @ds/offload-nvme)` });
    }
  }
  return notes;
}

function normalize(c: Raw) {
  const out: Record<string, unknown> = resolveAliases(c);
  for (const k of ['cpu_offload', 'cpu_offload_param', 'cpu_offload_use_pin_memory']) delete out[k];
  if (out.overlap_comm === null) out.overlap_comm = out.stage === 3;
  return attachConfigNotes(out, noEffectNotes(c)) as ZeroConfig;
}

export const zeroOptimizationSchema = z
  .strictObject(shape)
  .superRefine((c, ctx) => {
    for (const [path, message] of unbuiltProblems(resolveAliases(c))) {
      ctx.addIssue({ code: 'custom', path: path.split('.'), message: `recognised but not supported: ${message}` });
    }
  })
  .transform(normalize);

export interface ZeroConfig {
  stage: 0 | 1 | 2 | 3;
  contiguous_gradients: boolean;
  reduce_scatter: boolean;
  reduce_bucket_size: number;
  use_multi_rank_bucket_allreduce: boolean;
  allgather_partitions: boolean;
  allgather_bucket_size: number;
  overlap_comm: boolean;
  load_from_fp32_weights: boolean;
  elastic_checkpoint: boolean;
  sub_group_size: number;
  stage3_prefetch_bucket_size: number;
  stage3_param_persistence_threshold: number;
  stage3_model_persistence_threshold: number;
  stage3_max_live_parameters: number;
  stage3_max_reuse_distance: number;
  stage3_gather_16bit_weights_on_model_save: boolean;
  ignore_unused_parameters: boolean;
  log_trace_cache_warnings: boolean;
  [key: string]: unknown;
}

/**
 * The zero_optimization section of a ds_config with defaults filled in. Core has validated it when
 * the config came through initialize(); parsing again is idempotent and covers raw configs (zeroInit).
 */
export function zeroConfigOf(config: Readonly<Record<string, unknown>>): ZeroConfig {
  const section = config.zero_optimization;
  const raw = section === true ? { stage: 1 } : section === false || section === undefined ? {} : section;
  const parsed = zeroOptimizationSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - zero_optimization.${i.path.join('.')}: ${i.message}`);
    throw new DSConfigError(`zero_optimization is not valid:\n${lines.join('\n')}`);
  }
  return parsed.data as ZeroConfig;
}

/** Elements per partition unit of stages 1 and 2: one reduce-scatter and one all-gather each. */
export function bucketElements(c: ZeroConfig): number {
  const n = Math.min(c.reduce_bucket_size, c.allgather_bucket_size);
  return Math.max(2, Math.floor(n));
}
