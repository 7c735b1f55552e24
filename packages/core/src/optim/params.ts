// The one table of core optimizers' `params`: which keys each type takes, DeepSpeed's defaults
// (FusedAdam, FusedLamb, FusedLion, torch SGD) and the rule each value must meet. Both the config
// check (`ds-config check`, initialize's validation) and the optimizer factory read it, so a key is
// accepted by one exactly when the other can build it.
import { CORE_OPTIMIZER_TYPES as CORE_TYPE_NAMES } from '../config/core-keys.js';
import type { ConfigProblem } from '../errors.js';

type Params = Record<string, unknown>;

/** A checked value, or a message saying what it must be. */
type Rule = (v: unknown) => string | null;

const number = (ok: (x: number) => boolean, what: string): Rule => (v) => (typeof v === 'number' && Number.isFinite(v) && ok(v) ? null : `must be ${what}`);
const nonNegative = number((x) => x >= 0, 'a number >= 0');
const positive = number((x) => x > 0, 'a number > 0');
const anyNumber = number(() => true, 'a number');
const boolean: Rule = (v) => (typeof v === 'boolean' ? null : 'must be true or false');
const betas: Rule = (v) =>
  Array.isArray(v) && v.length === 2 && v.every((b) => typeof b === 'number' && b >= 0 && b < 1) ? null : 'must be two numbers in [0, 1), e.g. [0.9, 0.999]';
// FusedAdam rejects AMSGrad; accepting `true` and ignoring it would train something else.
const noAmsgrad: Rule = (v) => (v === false ? null : v === true ? 'AMSGrad is not supported (DeepSpeed FusedAdam rejects it too); remove it' : 'must be true or false');

interface Spec {
  readonly default: unknown;
  readonly rule: Rule;
}

// What FusedAdam and FusedLamb share.
const adamLike: Record<string, Spec> = {
  lr: { default: 1e-3, rule: nonNegative },
  betas: { default: [0.9, 0.999], rule: betas },
  eps: { default: 1e-8, rule: positive },
  weight_decay: { default: 0, rule: nonNegative },
  bias_correction: { default: true, rule: boolean },
};

const adam: Record<string, Spec> = {
  ...adamLike,
  adam_w_mode: { default: true, rule: boolean },
  torch_adam: { default: false, rule: boolean },
  amsgrad: { default: false, rule: noAmsgrad },
};

/** Keys, defaults and rules per core optimizer (lower-case DeepSpeed type). */
export const CORE_OPTIMIZER_SPECS: Readonly<Record<string, Readonly<Record<string, Spec>>>> = {
  adam,
  adamw: adam,
  sgd: {
    lr: { default: 1e-3, rule: nonNegative },
    momentum: { default: 0, rule: nonNegative },
    dampening: { default: 0, rule: anyNumber },
    weight_decay: { default: 0, rule: nonNegative },
    nesterov: { default: false, rule: boolean },
  },
  lion: {
    lr: { default: 1e-4, rule: nonNegative },
    betas: { default: [0.9, 0.99], rule: betas },
    weight_decay: { default: 0, rule: nonNegative },
  },
  lamb: {
    ...adamLike,
    eps_inside_sqrt: { default: false, rule: boolean },
    max_coeff: { default: 10, rule: positive },
    min_coeff: { default: 0.01, rule: nonNegative },
  },
};

/** Case-insensitive DeepSpeed type name -> our canonical name, for core's optimizers (from config/core-keys.ts's list). */
export const CORE_OPTIMIZER_TYPES: Readonly<Record<string, string>> = Object.fromEntries(CORE_TYPE_NAMES.map((t) => [t.toLowerCase(), t]));

/** DeepSpeed's engine rejects max_grad_norm for every optimizer (core's or a plugin's), pointing at gradient_clipping. */
export function maxGradNormProblem(value: unknown): ConfigProblem {
  return { path: 'optimizer.params.max_grad_norm', value, message: "'max_grad_norm' is not supported as an optimizer parameter; use the top-level 'gradient_clipping' key instead" };
}

export interface CheckedParams {
  /** The user's params over the defaults (meaningful only without problems). */
  values: Params;
  problems: ConfigProblem[];
}

/**
 * Checks `params` for core optimizer `type` (any case); undefined when the type is not core's.
 * Every problem is reported at once, each with its `optimizer.params.<key>` path.
 */
export function checkCoreOptimizerParams(type: string, params: Params | undefined): CheckedParams | undefined {
  const key = type.toLowerCase();
  const specs = CORE_OPTIMIZER_SPECS[key];
  if (!specs) return undefined;
  const user = params ?? {};
  const problems: ConfigProblem[] = [];
  for (const [k, v] of Object.entries(user)) {
    if (k === 'max_grad_norm') {
      problems.push(maxGradNormProblem(v));
    } else if (!(k in specs)) {
      problems.push({ path: `optimizer.params.${k}`, value: v, message: `is not a parameter of ${CORE_OPTIMIZER_TYPES[key]} (allowed: ${Object.keys(specs).join(', ')})` });
    }
  }
  const values: Params = {};
  for (const [k, spec] of Object.entries(specs)) {
    const v = k in user ? user[k] : spec.default;
    const why = spec.rule(v);
    if (why) problems.push({ path: `optimizer.params.${k}`, value: v, message: why });
    values[k] = v;
  }
  if (key === 'sgd' && values.nesterov === true && problems.length === 0 && ((values.momentum as number) <= 0 || values.dampening !== 0)) {
    problems.push({ path: 'optimizer.params.nesterov', value: true, message: 'Nesterov momentum requires momentum > 0 and dampening = 0' });
  }
  return { values, problems };
}
