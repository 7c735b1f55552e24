// The ds_config sections @ds/core validates itself, with DeepSpeed's key names and defaults
// (deepspeed/runtime/config.py, constants.py, precision and monitor configs at v0.16.5).
// Sections owned by plugins (zero_optimization, pipeline, ...) are not here: a registered plugin
// brings their schema. Unknown keys inside a section are errors (the objects are strict).
import { z } from 'zod';

const posInt = z.number().int().min(1);
const flag = (value: boolean) => z.boolean().default(value);
/** A section that may be left out: its defaults are filled in as if it were `{}`. */
const section = <T extends z.core.$ZodLooseShape>(shape: T) => z.strictObject(shape).prefault({} as never);

export const fp16Section = section({
  enabled: flag(false),
  auto_cast: flag(false),
  /** 0 selects dynamic loss scaling; any other value is a static scale. */
  loss_scale: z.number().min(0).default(0),
  initial_scale_power: z.number().int().min(0).max(127).default(16),
  loss_scale_window: posInt.default(1000),
  hysteresis: posInt.default(2),
  consecutive_hysteresis: flag(false),
  min_loss_scale: z.number().positive().default(1),
  fp16_master_weights_and_grads: flag(false),
});

export const bf16Section = section({
  enabled: flag(false),
  immediate_grad_update: flag(false),
});

export const optimizerSection = z.strictObject({
  type: z.string().min(1),
  params: z.record(z.string(), z.unknown()).default({}),
  legacy_fusion: flag(false),
});

export const schedulerSection = z.strictObject({
  type: z.string().min(1),
  params: z.record(z.string(), z.unknown()).default({}),
});

/**
 * Present (even as `{}`): the model's checkpointable layers recompute their activations in backward
 * (engine/activation-checkpointing.ts); absent: nothing is checkpointed from the config.
 */
export const activationCheckpointingSection = z.strictObject({
  partition_activations: flag(false),
  contiguous_memory_optimization: flag(false),
  cpu_checkpointing: flag(false),
  number_checkpoints: posInt.nullable().default(null),
  synchronize_checkpoint_boundary: flag(false),
  profile: flag(false),
});
export type ActivationCheckpointingConfig = z.output<typeof activationCheckpointingSection>;

export const commsLoggerSection = section({
  enabled: flag(false),
  verbose: flag(false),
  prof_all: flag(true),
  debug: flag(false),
  prof_ops: z.array(z.string()).default([]),
});

const monitorSection = section({
  enabled: flag(false),
  output_path: z.string().default(''),
  job_name: z.string().default('DeepSpeedJobName'),
});

/** DeepSpeed matches tag_validation case-insensitively; the parsed value is capitalised. */
const tagValidation = z
  .string()
  .transform((s) => s.charAt(0).toUpperCase() + s.slice(1).toLowerCase())
  .pipe(z.enum(['Warn', 'Ignore', 'Fail']))
  .default('Warn');

export const checkpointSection = section({
  tag_validation: tagValidation,
  load_universal: flag(false),
  use_node_local_storage: flag(false),
  parallel_write: section({ pipeline_stage: flag(false) }),
});

const commDtype = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.enum(['fp16', 'bf16', 'fp32']));

/**
 * DeepSpeed's flops profiler (profiling/): at global step `profile_step` rank 0 counts each module's
 * parameters, MACs, FLOPs and forward latency and prints (or writes to `output_file`) the profile.
 */
export const flopsProfilerSection = section({
  enabled: flag(false),
  /** Extra forward passes backward recomputes (activation checkpointing): bwd flops = (2 + f) x fwd flops. */
  recompute_fwd_factor: z.number().min(0).default(0.0),
  profile_step: z.number().int().min(0).default(1),
  /** Deepest module level in the aggregated and detailed profiles; -1 is every level. */
  module_depth: z.number().int().min(-1).default(-1),
  top_modules: posInt.default(1),
  detailed: flag(true),
  output_file: z.string().min(1).nullable().default(null),
});
export type FlopsProfilerConfig = z.output<typeof flopsProfilerSection>;

export const timersSection = section({
  throughput: section({ enabled: flag(true), synchronized: flag(true) }),
});

/** Every top-level key core validates, each with its schema. */
export const CORE_SECTIONS = {
  // null counts as not given, as in DeepSpeed.
  train_batch_size: posInt.nullish(),
  train_micro_batch_size_per_gpu: posInt.nullish(),
  gradient_accumulation_steps: posInt.nullish(),
  // Code default is None (no progress line); the docs say 10.
  steps_per_print: posInt.nullable().default(null),
  wall_clock_breakdown: flag(false),
  memory_breakdown: flag(false),
  dump_state: flag(false),
  // Code default 0.0 (disabled); the docs say 1.0.
  gradient_clipping: z.number().min(0).default(0),
  prescale_gradients: flag(false),
  gradient_predivide_factor: z.number().positive().default(1.0),
  disable_allgather: flag(false),
  communication_data_type: commDtype.nullable().default(null),
  seq_parallel_communication_data_type: commDtype.default('fp32'),
  zero_allow_untested_optimizer: flag(false),
  zero_force_ds_cpu_optimizer: flag(true),
  fp16: fp16Section,
  bf16: bf16Section,
  optimizer: optimizerSection.optional(),
  scheduler: schedulerSection.optional(),
  activation_checkpointing: activationCheckpointingSection.optional(),
  comms_logger: commsLoggerSection,
  tensorboard: monitorSection,
  csv_monitor: monitorSection,
  checkpoint: checkpointSection,
  data_types: section({ grad_accum_dtype: commDtype.nullable().default(null) }),
  timers: timersSection,
  flops_profiler: flopsProfilerSection,
  dataloader_drop_last: flag(false),
  vocabulary_size: posInt.optional(),
  data_parallel_size: posInt.optional(),
  use_data_before_expert_parallelism: flag(false),
};

export const CORE_SECTION_KEYS: readonly string[] = Object.keys(CORE_SECTIONS);

export const coreConfigSchema = z.strictObject(CORE_SECTIONS);

/** The validated config: DeepSpeed's snake_case keys, defaults filled, plus any plugin sections. */
export type CoreConfig = z.output<typeof coreConfigSchema>;
export type DSConfig = CoreConfig & { readonly [section: string]: unknown };
export type Fp16Config = CoreConfig['fp16'];
export type Bf16Config = CoreConfig['bf16'];

