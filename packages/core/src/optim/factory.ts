// Builds core's optimizers from a ds_config `optimizer` section ({type, params}), with DeepSpeed's
// defaults and errors. Types not built here (OneBitAdam, ...) come from plugins through the registry.
import { DSConfigError, type ConfigProblem } from '../errors.js';
import { Adam } from './adam.js';
import { Lamb } from './lamb.js';
import { Lion } from './lion.js';
import { Sgd } from './sgd.js';
import type { Optimizer, OptimizerContext, ParamGroup } from './types.js';

type Params = Record<string, unknown>;

/** Allowed `params` keys per type, with DeepSpeed's defaults (FusedAdam, FusedLamb, FusedLion, torch SGD). */
const DEFAULTS: Record<string, Params> = {
  adam: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, bias_correction: true, adam_w_mode: true, torch_adam: false, amsgrad: false },
  adamw: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, bias_correction: true, adam_w_mode: true, torch_adam: false, amsgrad: false },
  sgd: { lr: 1e-3, momentum: 0, dampening: 0, weight_decay: 0, nesterov: false },
  lion: { lr: 1e-4, betas: [0.9, 0.99], weight_decay: 0 },
  lamb: { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, bias_correction: true, eps_inside_sqrt: false, max_coeff: 10, min_coeff: 0.01, max_grad_norm: 0 },
};

/** Case-insensitive DeepSpeed type name -> our canonical name, for core's optimizers. */
export const CORE_OPTIMIZER_TYPES: Readonly<Record<string, string>> = { adam: 'Adam', adamw: 'AdamW', sgd: 'SGD', lion: 'Lion', lamb: 'Lamb' };

function num(p: Params, key: string, problems: ConfigProblem[], check?: (x: number) => boolean, allowed = 'a number'): number {
  const v = p[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || (check && !check(v))) {
    problems.push({ path: `optimizer.params.${key}`, value: v, message: `must be ${allowed}` });
    return NaN;
  }
  return v;
}

function bool(p: Params, key: string, problems: ConfigProblem[]): boolean {
  const v = p[key];
  if (typeof v !== 'boolean') problems.push({ path: `optimizer.params.${key}`, value: v, message: 'must be true or false' });
  return v === true;
}

function betas(p: Params, problems: ConfigProblem[]): [number, number] {
  const v = p.betas;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((b) => typeof b === 'number' && b >= 0 && b < 1)) {
    problems.push({ path: 'optimizer.params.betas', value: v, message: 'must be two numbers in [0, 1), e.g. [0.9, 0.999]' });
    return [0.9, 0.999];
  }
  return [v[0], v[1]];
}

/**
 * Creates core's optimizer for `type`; returns undefined when the type is not one of core's (the
 * caller then asks the plugin registry). `groups` carry per-group overrides (lr, weightDecay).
 */
export function createCoreOptimizer(ctx: OptimizerContext, type: string, rawParams: Params | undefined, groupOverrides: Partial<ParamGroup>[] = [{}]): Optimizer | undefined {
  const key = type.toLowerCase();
  const defaults = DEFAULTS[key];
  if (!defaults) return undefined;
  const problems: ConfigProblem[] = [];
  const user = rawParams ?? {};
  if ('max_grad_norm' in user && key !== 'lamb') {
    problems.push({ path: 'optimizer.params.max_grad_norm', value: user.max_grad_norm, message: "is not supported; use the top-level 'gradient_clipping' key instead (as DeepSpeed requires)" });
  }
  for (const k of Object.keys(user)) {
    if (!(k in defaults) && k !== 'max_grad_norm') problems.push({ path: `optimizer.params.${k}`, value: user[k], message: `is not a parameter of ${CORE_OPTIMIZER_TYPES[key]} (allowed: ${Object.keys(defaults).join(', ')})` });
  }
  const p: Params = { ...defaults, ...user };
  const lr = num(p, 'lr', problems, (x) => x >= 0, 'a number >= 0');
  const weightDecay = num(p, 'weight_decay', problems, (x) => x >= 0, 'a number >= 0');
  const groups: ParamGroup[] = groupOverrides.map((o) => ({ lr, weightDecay, ...o }));
  let opt: Optimizer | undefined;
  if (key === 'adam' || key === 'adamw') {
    const b = betas(p, problems);
    const eps = num(p, 'eps', problems, (x) => x > 0, 'a number > 0');
    const biasCorrection = bool(p, 'bias_correction', problems);
    const adamWMode = key === 'adamw' ? true : bool(p, 'adam_w_mode', problems);
    if (p.amsgrad === true) problems.push({ path: 'optimizer.params.amsgrad', value: true, message: 'AMSGrad is not supported (DeepSpeed FusedAdam rejects it too); remove it' });
    bool(p, 'torch_adam', problems);
    if (problems.length === 0) opt = new Adam(ctx, groups, { lr, betas: b, eps, weightDecay, biasCorrection, adamWMode }, CORE_OPTIMIZER_TYPES[key]);
  } else if (key === 'sgd') {
    const momentum = num(p, 'momentum', problems, (x) => x >= 0, 'a number >= 0');
    const dampening = num(p, 'dampening', problems);
    const nesterov = bool(p, 'nesterov', problems);
    if (nesterov && (momentum <= 0 || dampening !== 0)) problems.push({ path: 'optimizer.params.nesterov', value: true, message: 'Nesterov momentum requires momentum > 0 and dampening = 0' });
    if (problems.length === 0) opt = new Sgd(ctx, groups, { momentum, dampening, nesterov });
  } else if (key === 'lion') {
    const b = betas(p, problems);
    if (problems.length === 0) opt = new Lion(ctx, groups, b);
  } else {
    const b = betas(p, problems);
    const eps = num(p, 'eps', problems, (x) => x > 0, 'a number > 0');
    const biasCorrection = bool(p, 'bias_correction', problems);
    const epsInsideSqrt = bool(p, 'eps_inside_sqrt', problems);
    const maxCoeff = num(p, 'max_coeff', problems, (x) => x > 0, 'a number > 0');
    const minCoeff = num(p, 'min_coeff', problems, (x) => x >= 0, 'a number >= 0');
    if (num(p, 'max_grad_norm', problems) > 0) problems.push({ path: 'optimizer.params.max_grad_norm', value: p.max_grad_norm, message: "clipping inside Lamb is not supported; use the top-level 'gradient_clipping' key" });
    if (problems.length === 0) opt = new Lamb(ctx, groups, { betas: b, eps, biasCorrection, epsInsideSqrt, maxCoeff, minCoeff });
  }
  if (problems.length > 0) {
    throw new DSConfigError(`optimizer ${type}: ${problems.length} problem(s):\n${problems.map((x) => `  - ${x.path}: ${x.message} (got ${JSON.stringify(x.value)})`).join('\n')}`, problems);
  }
  return opt;
}
