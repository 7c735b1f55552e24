// Deprecated and legacy spellings of core keys, mapped to the current ones in this one place (as
// DeepSpeed's typed config does). Each mapping leaves a warning; giving both spellings is an error.
// Plugin sections map their own legacy keys inside their schema.
import type { ConfigProblem } from '../errors.js';
import type { ConfigObject } from './read.js';

interface Rename {
  readonly from: string;
  readonly to: string;
  /** Turns the old value into the new one; identity when absent. */
  readonly convert?: (value: unknown) => unknown;
  readonly note: string;
}

/** Top-level renames. `zero_optimization` is plugin-owned, but its legacy boolean form is a top-level shape. */
const RENAMES: readonly Rename[] = [
  { from: 'bfloat16', to: 'bf16', note: "'bfloat16' is the legacy name of 'bf16'" },
];

const SHAPE_MIGRATIONS: readonly Rename[] = [
  {
    from: 'zero_optimization',
    to: 'zero_optimization',
    convert: (v) => (typeof v === 'boolean' ? { stage: v ? 1 : 0 } : v),
    note: "'zero_optimization': true/false is deprecated; DeepSpeed reads it as { \"stage\": 1 } / { \"stage\": 0 }",
  },
];

export interface Migration {
  raw: ConfigObject;
  warnings: ConfigProblem[];
  problems: ConfigProblem[];
}

export function migrateDeprecated(input: ConfigObject): Migration {
  const raw: ConfigObject = { ...input };
  const warnings: ConfigProblem[] = [];
  const problems: ConfigProblem[] = [];
  for (const r of RENAMES) {
    if (!(r.from in raw)) continue;
    if (r.to in raw) {
      problems.push({ path: r.from, value: raw[r.from], message: `${r.note}; both '${r.from}' and '${r.to}' are given, keep only '${r.to}'` });
      continue;
    }
    raw[r.to] = r.convert ? r.convert(raw[r.from]) : raw[r.from];
    delete raw[r.from];
    warnings.push({ path: r.from, value: raw[r.to], message: `${r.note}; rename it to '${r.to}'`, suggestion: r.to });
  }
  for (const m of SHAPE_MIGRATIONS) {
    if (!(m.from in raw)) continue;
    const converted = m.convert!(raw[m.from]);
    if (converted !== raw[m.from]) {
      warnings.push({ path: m.from, value: raw[m.from], message: m.note });
      raw[m.to] = converted;
    }
  }
  return { raw, warnings, problems };
}
