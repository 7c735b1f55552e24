// Parsing one core section with DeepSpeed's tolerance for unknown keys. DeepSpeed (v0.16.5) reads
// fp16, bf16, optimizer, scheduler, activation_checkpointing, checkpoint, data_types, timers and
// flops_profiler as plain dicts: a key it does not know there is ignored, not an error (its own test configs carry
// fp16's loss-scale keys inside bf16). Here such a key is ignored with a warning naming the nearest
// valid key, or is an error under `strict`. Sections DeepSpeed validates with pydantic
// (comms_logger, the monitors, timers.throughput) keep rejecting unknown keys, as DeepSpeed does.
import type { z } from 'zod';

import type { ConfigProblem } from '../errors.js';
import { nearest } from './levenshtein.js';
import { issuesToProblems, joinPath, objectKeysAt } from './problems.js';

/** Key paths of the objects DeepSpeed reads as plain dicts. */
export const LOOSE_SECTIONS: readonly string[] = [
  'fp16',
  'bf16',
  'optimizer',
  'scheduler',
  'activation_checkpointing',
  'checkpoint',
  'checkpoint.parallel_write',
  'data_types',
  'timers',
  'flops_profiler',
];

const FP16_ONLY = new Set(['auto_cast', 'loss_scale', 'initial_scale_power', 'loss_scale_window', 'hysteresis', 'consecutive_hysteresis', 'min_loss_scale', 'fp16_master_weights_and_grads']);

function ignoredMessage(section: string, key: string, valid: readonly string[]): { message: string; suggestion?: string } {
  if (section === 'bf16' && FP16_ONLY.has(key)) {
    return { message: `'bf16.${key}' has no effect: it is an fp16 key (bf16 trains without loss scaling); DeepSpeed ignores it inside bf16 too` };
  }
  const suggestion = nearest(key, valid);
  return {
    message: `unknown key '${key}' in '${section}' has no effect (DeepSpeed reads '${section}' as a plain dict and ignores it)${suggestion ? `; did you mean '${suggestion}'?` : ''}`,
    ...(suggestion ? { suggestion } : {}),
  };
}

export interface SectionParse {
  /** The parsed value when there were no problems (undefined for an absent optional section). */
  data?: unknown;
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
}

/** Parses the top-level section `key` of the config; unknown keys of loose sections become warnings unless `strict`. */
export function parseSection(key: string, schema: z.ZodType, value: unknown, strict: boolean): SectionParse {
  const first = schema.safeParse(value);
  if (first.success) return { data: first.data, problems: [], warnings: [] };
  const loose = first.error.issues.filter((i) => i.code === 'unrecognized_keys' && LOOSE_SECTIONS.includes(joinPath(key, i.path)));
  if (strict || loose.length === 0) return { problems: issuesToProblems(first.error.issues, value, schema, key), warnings: [] };
  const stripped = structuredClone(value) as Record<string, unknown>;
  const warnings: ConfigProblem[] = [];
  for (const issue of loose) {
    if (issue.code !== 'unrecognized_keys') continue;
    let holder = stripped;
    for (const part of issue.path) holder = holder[part as string] as Record<string, unknown>;
    const section = joinPath(key, issue.path);
    const valid = objectKeysAt(schema, issue.path);
    for (const k of issue.keys) {
      warnings.push({ path: `${section}.${k}`, value: holder[k], ...ignoredMessage(section, k, valid) });
      delete holder[k];
    }
  }
  const second = schema.safeParse(stripped);
  if (second.success) return { data: second.data, problems: [], warnings };
  return { problems: issuesToProblems(second.error.issues, stripped, schema, key), warnings };
}
