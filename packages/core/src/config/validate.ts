// Validation of a parsed ds_config: every problem is collected, then reported in one DSConfigError.
// Order: legacy keys mapped, "auto" placeholders filled or flagged, top-level keys sorted into core
// sections, registered plugin sections, plugin sections whose plugin is absent, recognised but
// unbuilt sections, and unknown keys; then each section is validated and the cross-section rules
// (precision, plugins needed, batch triad) are checked.
import type { ConfigProblem } from '../errors.js';
import { KNOWN_PLUGINS, knownPluginForSection } from '../plugin/catalogue.js';
import type { Registry } from '../plugin/registry.js';
import { SCHEDULER_PARAMS } from '../schedulers/params.js';
import { resolveAutoValues, type AutoValues } from './auto.js';
import { staticBatchProblems, tryResolveBatch, type ResolvedBatch } from './batch.js';
import { CORE_SCHEDULER_TYPES } from './core-keys.js';
import { CORE_SECTIONS, type DSConfig } from './core-sections.js';
import { migrateDeprecated } from './deprecated.js';
import { nearest } from './levenshtein.js';
import { checkOptimizer } from './optimizer.js';
import { configError, issuesToProblems } from './problems.js';
import type { ConfigObject } from './read.js';
import { findPluginNeeds, missingPluginMessage, type PluginNeed } from './requirements.js';
import { UNBUILT_SECTIONS, unbuiltSection } from './unbuilt.js';

export interface ValidateOptions {
  /** Plugins whose sections and optimizers are available. */
  registry?: Registry;
  /** Unknown top-level keys become errors instead of warnings. */
  strict?: boolean;
  /** Values for HF-style "auto" placeholders, by key path. */
  autoValues?: AutoValues;
  /** Data-parallel world size; when given the batch triad is resolved and checked. */
  worldSize?: number;
  /** Called once per warning (they are also returned); e.g. the engine's rank-0 logger. */
  onWarning?: (warning: ConfigProblem) => void;
}

export interface ValidatedConfig {
  config: DSConfig;
  warnings: ConfigProblem[];
  batch?: ResolvedBatch;
  plugins: PluginNeed[];
}

export interface ConfigAnalysis {
  config?: DSConfig;
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
  batch?: ResolvedBatch;
  plugins: PluginNeed[];
}

const CORE_KEYS = Object.keys(CORE_SECTIONS) as Array<keyof typeof CORE_SECTIONS>;
const LEGACY_KEYS = ['bfloat16'];

/** Validates without throwing: returns the config (when valid), the problems and the warnings. */
export function analyseConfig(input: ConfigObject, options: ValidateOptions = {}): ConfigAnalysis {
  const { registry } = options;
  const migrated = migrateDeprecated(input);
  const auto = resolveAutoValues(migrated.raw, options.autoValues);
  const raw = auto.raw;
  const problems: ConfigProblem[] = [...migrated.problems, ...auto.problems];
  const warnings: ConfigProblem[] = [...migrated.warnings];
  const out: Record<string, unknown> = {};

  const coreKeys = new Set<string>(CORE_KEYS);
  for (const [key, value] of Object.entries(raw)) {
    if (coreKeys.has(key)) continue;
    const plugin = registry?.configSection(key);
    if (plugin) {
      try {
        const result = plugin.value.safeParse(value);
        if (result.success) out[key] = result.data;
        else problems.push(...issuesToProblems(result.error.issues, value, plugin.value, key));
      } catch (err) {
        problems.push({ path: key, value, message: `the schema of plugin '${plugin.plugin.name}' (${plugin.plugin.package}) failed: ${(err as Error)?.message ?? String(err)}` });
      }
      continue;
    }
    if (knownPluginForSection(key)) {
      out[key] = value; // whether it needs its plugin is decided by findPluginNeeds below
      continue;
    }
    const unbuilt = unbuiltSection(key);
    if (unbuilt) {
      if (unbuilt.active(value)) {
        problems.push({
          path: key,
          value,
          message: `'${key}' (${unbuilt.feature}) is a DeepSpeed feature this TypeScript port has not built; remove the section or switch it off`,
        });
      } else {
        out[key] = value;
      }
      continue;
    }
    const valid = [...CORE_KEYS, ...(registry?.configSectionKeys() ?? []), ...KNOWN_PLUGINS.flatMap((p) => p.sections), ...UNBUILT_SECTIONS.map((s) => s.key), ...LEGACY_KEYS];
    const suggestion = nearest(key, valid);
    const unknown: ConfigProblem = {
      path: key,
      value,
      message:
        `unknown top-level key '${key}'` +
        (suggestion ? `; did you mean '${suggestion}'?` : '') +
        (options.strict ? '' : ' (ignored, as DeepSpeed ignores unknown keys; pass { strict: true } or ds-config --strict to make it an error)'),
      ...(suggestion ? { suggestion } : {}),
    };
    (options.strict ? problems : warnings).push(unknown);
  }

  for (const key of CORE_KEYS) {
    const schema = CORE_SECTIONS[key];
    const result = schema.safeParse(raw[key]);
    if (result.success) {
      if (result.data !== undefined) out[key] = result.data;
    } else {
      problems.push(...issuesToProblems(result.error.issues, raw[key], schema, key));
    }
  }

  checkOptimizerSection(out, registry, problems);
  checkSchedulerSection(out, problems, warnings);
  checkPrecision(out, raw, problems);
  checkActivationCheckpointing(out, problems);
  if (typeof out.vocabulary_size === 'number' && out.vocabulary_size % 8 !== 0) {
    warnings.push({ path: 'vocabulary_size', value: out.vocabulary_size, message: `vocabulary size ${out.vocabulary_size} is not aligned to 8, which may lower tensor-core utilization` });
  }

  const plugins = findPluginNeeds(raw, registry);
  for (const need of plugins) {
    if (need.registered || problems.some((p) => p.path === need.path)) continue;
    problems.push({ path: need.path, value: need.value, message: missingPluginMessage(need) });
  }

  problems.push(...staticBatchProblems(raw as Record<string, number | null>));
  let batch: ResolvedBatch | undefined;
  if (options.worldSize !== undefined && !problems.some((p) => p.path.startsWith('train_') || p.path.startsWith('gradient_accumulation'))) {
    const resolution = tryResolveBatch(out as Record<string, number>, options.worldSize);
    problems.push(...resolution.problems);
    batch = resolution.batch;
  }

  // An "auto" placeholder is reported once, not again as a type error of the same key.
  if (options.onWarning) for (const w of warnings) options.onWarning(w);
  const autoPaths = new Set(auto.problems.map((p) => p.path));
  const reported = problems.filter((p) => !autoPaths.has(p.path) || auto.problems.includes(p));
  return {
    ...(reported.length === 0 ? { config: out as DSConfig } : {}),
    problems: reported,
    warnings,
    ...(batch ? { batch } : {}),
    plugins,
  };
}

/** Validates and returns the config with defaults filled, or throws one DSConfigError listing every problem. */
export function validateConfig(input: ConfigObject, options: ValidateOptions = {}): ValidatedConfig {
  const analysis = analyseConfig(input, options);
  if (!analysis.config) throw configError(analysis.problems);
  return { config: analysis.config, warnings: analysis.warnings, plugins: analysis.plugins, ...(analysis.batch ? { batch: analysis.batch } : {}) };
}

function checkOptimizerSection(out: Record<string, unknown>, registry: Registry | undefined, problems: ConfigProblem[]): void {
  const section = out.optimizer as { type: string; params: Record<string, unknown>; legacy_fusion: boolean } | undefined;
  if (!section) return;
  const check = checkOptimizer(section, registry);
  problems.push(...check.problems);
  if (check.type) out.optimizer = { ...section, type: check.type, params: check.params ?? section.params };
}

function checkSchedulerSection(out: Record<string, unknown>, problems: ConfigProblem[], warnings: ConfigProblem[]): void {
  const section = out.scheduler as { type: string; params: Record<string, unknown> } | undefined;
  if (!section) return;
  const schema = (SCHEDULER_PARAMS as Record<string, (typeof SCHEDULER_PARAMS)[keyof typeof SCHEDULER_PARAMS] | undefined>)[section.type];
  if (!schema) {
    const suggestion = nearest(section.type, CORE_SCHEDULER_TYPES);
    problems.push({
      path: 'scheduler.type',
      value: section.type,
      message:
        `unknown scheduler '${section.type}'; ` +
        (suggestion ? `did you mean '${suggestion}'? ` : '') +
        `available: ${CORE_SCHEDULER_TYPES.join(', ')} (DeepSpeed's fallback to torch.optim.lr_scheduler does not exist here)`,
      ...(suggestion ? { suggestion } : {}),
    });
    return;
  }
  const result = schema.safeParse(section.params);
  if (!result.success) {
    problems.push(...issuesToProblems(result.error.issues, section.params, schema, 'scheduler.params'));
    return;
  }
  const params = result.data as Record<string, unknown>;
  out.scheduler = { type: section.type, params };
  const warmupType = params.warmup_type;
  if ((section.type === 'WarmupLR' || section.type === 'WarmupDecayLR') && warmupType !== 'log' && warmupType !== 'linear') {
    warnings.push({ path: 'scheduler.params.warmup_type', value: warmupType, message: `unknown warmup_type '${String(warmupType)}'; DeepSpeed falls back to 'log'` });
  }
  const total = params.total_num_steps;
  const warmup = Math.max(2, params.warmup_num_steps as number);
  if (typeof total === 'number' && total < warmup) {
    warnings.push({ path: 'scheduler.params.total_num_steps', value: total, message: `total_num_steps ${total} is less than warmup_num_steps ${params.warmup_num_steps as number}` });
  }
}

/**
 * activation_checkpointing: what it asks for on the cpu device. Checkpointing itself is the model's
 * (@ds/tensor's checkpoint() / Checkpointed / GPT's checkpointActivations, as DeepSpeed's section
 * only tunes deepspeed.checkpointing). cpu_checkpointing and synchronize_checkpoint_boundary are
 * accepted because on the cpu device they already hold (checkpoints live in host memory, kernels are
 * synchronous); number_checkpoints only sizes contiguous buffers. The switches that need what is not
 * built are rejected by name rather than ignored.
 */
function checkActivationCheckpointing(out: Record<string, unknown>, problems: ConfigProblem[]): void {
  const ac = out.activation_checkpointing as Record<string, unknown> | undefined;
  if (!ac) return;
  const unbuilt: [string, string][] = [
    ['partition_activations', 'splits checkpointed activations across the tensor-parallel group; tensor parallelism is not built in this port'],
    ['contiguous_memory_optimization', 'copies partitioned checkpoints into contiguous buffers (DeepSpeed requires partition_activations for it), and activation partitioning is not built'],
    ['profile', 'times each checkpointed forward and recomputation; that profiling is not built (wall_clock_breakdown times forward and backward as a whole)'],
  ];
  for (const [key, why] of unbuilt) {
    if (ac[key] === true) problems.push({ path: `activation_checkpointing.${key}`, value: true, message: `'activation_checkpointing.${key}' ${why}; set it to false` });
  }
}

function checkPrecision(out: Record<string, unknown>, raw: ConfigObject, problems: ConfigProblem[]): void {
  const fp16 = out.fp16 as { enabled: boolean; fp16_master_weights_and_grads: boolean } | undefined;
  const bf16 = out.bf16 as { enabled: boolean } | undefined;
  if (fp16?.enabled && bf16?.enabled) {
    problems.push({ path: 'bf16.enabled', value: true, message: 'bfloat16 and fp16 modes cannot be simultaneously enabled; set one of fp16.enabled / bf16.enabled to false' });
  }
  if (fp16?.enabled && fp16.fp16_master_weights_and_grads) {
    const zero = raw.zero_optimization as { stage?: unknown } | undefined;
    if (zero?.stage !== 2) {
      problems.push({
        path: 'fp16.fp16_master_weights_and_grads',
        value: true,
        message: `Fp16_master_weights_and_grads is only supported with ZeRO Stage 2 (zero_optimization.stage is ${JSON.stringify(zero?.stage ?? 0)})`,
      });
    }
  }
}
