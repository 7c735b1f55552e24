// Validation of a parsed ds_config: every problem is collected, then reported in one DSConfigError.
// Order: legacy keys mapped, "auto" placeholders filled or flagged, top-level keys sorted into core
// sections, registered plugin sections, plugin sections whose plugin is absent, recognised but
// unbuilt sections, and unknown keys; then each section is validated (loose.ts: unknown keys in the
// sections DeepSpeed reads as plain dicts are warnings), the cross-section rules (precision, plugins
// needed, batch triad) are checked, and keys set to values this port does not act on are rejected
// or warned about (key-rules.ts).
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
import { keyRuleFindings } from './key-rules.js';
import { parseSection } from './loose.js';
import { configNotesOf } from './notes.js';
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
        if (result.success) {
          out[key] = result.data;
          warnings.push(...configNotesOf(result.data, key));
        } else problems.push(...issuesToProblems(result.error.issues, value, plugin.value, key));
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
    const parsed = parseSection(key, CORE_SECTIONS[key], raw[key], options.strict ?? false);
    problems.push(...parsed.problems);
    warnings.push(...parsed.warnings);
    if (parsed.data !== undefined) out[key] = parsed.data;
  }

  checkOptimizerSection(out, registry, problems);
  checkSchedulerSection(out, problems, warnings);
  checkPrecision(out, raw, problems);
  const keyRules = keyRuleFindings(out);
  problems.push(...keyRules.problems);
  warnings.push(...keyRules.warnings);
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

function checkPrecision(out: Record<string, unknown>, raw: ConfigObject, problems: ConfigProblem[]): void {
  const fp16 = out.fp16 as { enabled: boolean; fp16_master_weights_and_grads: boolean } | undefined;
  const bf16 = out.bf16 as { enabled: boolean } | undefined;
  if (fp16?.enabled && bf16?.enabled) {
    problems.push({ path: 'bf16.enabled', value: true, message: 'bfloat16 and fp16 modes cannot be simultaneously enabled; set one of fp16.enabled / bf16.enabled to false' });
  }
  if (fp16?.enabled && fp16.fp16_master_weights_and_grads) {
    // DeepSpeed asserts ZeRO stage 2, then that ZeRO-Offload runs DeepSpeedCPUAdam, which is not built.
    const zero = raw.zero_optimization as { stage?: unknown } | undefined;
    problems.push({
      path: 'fp16.fp16_master_weights_and_grads',
      value: true,
      message:
        zero?.stage !== 2
          ? `Fp16_master_weights_and_grads is only supported with ZeRO Stage 2 (zero_optimization.stage is ${JSON.stringify(zero?.stage ?? 0)})`
          : "'fp16.fp16_master_weights_and_grads' keeps fp16 master weights for ZeRO-Offload's DeepSpeedCPUAdam (offload_optimizer.device 'cpu'), which is not built; set it to false",
    });
  }
}
