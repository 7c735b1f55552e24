// Turns zod issues into ConfigProblems that name the key path, the value, what is allowed and, for a
// misspelt key, the nearest valid one; and formats a list of problems as one error message.
import type { z } from 'zod';

import { DSConfigError, type ConfigProblem } from '../errors.js';
import { nearest } from './levenshtein.js';

type Issue = z.core.$ZodIssue;

export function joinPath(base: string, parts: readonly PropertyKey[]): string {
  let out = base;
  for (const part of parts) {
    if (typeof part === 'number') out += `[${part}]`;
    else out = out ? `${out}.${String(part)}` : String(part);
  }
  return out;
}

export function readPath(value: unknown, parts: readonly PropertyKey[]): unknown {
  let cur = value;
  for (const key of parts) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Keys of the object schema found at `parts` inside `schema` (through defaults, optionals, pipes). */
export function objectKeysAt(schema: z.ZodType, parts: readonly PropertyKey[]): string[] {
  let cur: unknown = schema;
  for (let i = 0; i <= parts.length; i++) {
    cur = unwrap(cur);
    const def = (cur as { _zod?: { def?: { type?: string; shape?: Record<string, unknown> } } })?._zod?.def;
    if (def?.type !== 'object' || !def.shape) return [];
    if (i === parts.length) return Object.keys(def.shape);
    cur = def.shape[String(parts[i])];
  }
  return [];
}

/**
 * Dotted paths of every leaf key of `schema` (objects are walked through defaults, optionals and
 * pipes; records and arrays are leaves), each prefixed with `prefix`. CONFIG.md's tests compare them
 * with the table.
 */
export function schemaKeyPaths(schema: unknown, prefix: string): string[] {
  const def = (unwrap(schema) as { _zod?: { def?: { type?: string; shape?: Record<string, unknown> } } })?._zod?.def;
  if (def?.type !== 'object' || !def.shape) return [prefix];
  return Object.entries(def.shape).flatMap(([k, v]) => schemaKeyPaths(v, prefix ? `${prefix}.${k}` : k));
}

function unwrap(schema: unknown): unknown {
  let cur = schema;
  for (let guard = 0; guard < 20; guard++) {
    const def = (cur as { _zod?: { def?: { type?: string; innerType?: unknown; in?: unknown } } })?._zod?.def;
    if (!def) return cur;
    if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') cur = def.innerType;
    else if (def.type === 'pipe') cur = def.in;
    else return cur;
  }
  return cur;
}

function allowed(issue: Issue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected === 'int' ? 'an integer' : `a ${issue.expected}`}`;
    case 'too_small':
      if (issue.origin === 'array') return `needs at least ${issue.minimum} item(s)`;
      if (issue.origin === 'string') return 'must not be empty';
      return `must be ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
    case 'too_big':
      return `must be ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_union':
      return 'expected a number, or a list of numbers (one per optimizer param group)';
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    default:
      return issue.message;
  }
}

/**
 * ConfigProblems for the issues zod found in `input` (the section's raw value) validated by `schema`;
 * `base` is the key path of that section in the config.
 */
export function issuesToProblems(issues: readonly Issue[], input: unknown, schema: z.ZodType, base: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const valid = objectKeysAt(schema, issue.path);
      for (const key of issue.keys) {
        const suggestion = nearest(key, valid);
        const path = joinPath(base, [...issue.path, key]);
        const hint = suggestion ? `did you mean '${suggestion}'?` : `valid keys here: ${valid.join(', ')}`;
        problems.push({ path, value: readPath(input, [...issue.path, key]), message: `unknown key '${key}'; ${hint}`, ...(suggestion ? { suggestion } : {}) });
      }
      continue;
    }
    const value = readPath(input, issue.path);
    problems.push({ path: joinPath(base, issue.path), value, message: `${allowed(issue)}, got ${show(value)}` });
  }
  return problems;
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((p) => (p.path && p.message.startsWith(p.path) ? `  - ${p.message}` : `  - ${p.path || '(root)'}: ${p.message}`)).join('\n');
}

export function configError(problems: readonly ConfigProblem[]): DSConfigError {
  const n = problems.length;
  return new DSConfigError(`ds_config has ${n} problem${n === 1 ? '' : 's'}:\n${formatProblems(problems)}`, problems);
}
