// Builds core's optimizers from a ds_config `optimizer` section ({type, params}), with DeepSpeed's
// defaults and errors (the params table and its checks: params.ts). Types not built here (OneBitAdam, ...) come from plugins through the registry.
import { DSConfigError } from '../errors.js';
import { Adam } from './adam.js';
import { Lamb } from './lamb.js';
import { Lion } from './lion.js';
import { Sgd } from './sgd.js';
import { checkCoreOptimizerParams, CORE_OPTIMIZER_TYPES } from './params.js';
import type { Optimizer, OptimizerContext, ParamGroup } from './types.js';

type Params = Record<string, unknown>;

export { CORE_OPTIMIZER_TYPES } from './params.js';

/**
 * Creates core's optimizer for `type`; returns undefined when the type is not one of core's (the
 * caller then asks the plugin registry). `groups` carry per-group overrides (lr, weightDecay).
 */
export function createCoreOptimizer(ctx: OptimizerContext, type: string, rawParams: Params | undefined, groupOverrides: Partial<ParamGroup>[] = [{}]): Optimizer | undefined {
  const checked = checkCoreOptimizerParams(type, rawParams);
  if (!checked) return undefined;
  const { values: p, problems } = checked;
  if (problems.length > 0) {
    throw new DSConfigError(`optimizer ${type}: ${problems.length} problem(s):\n${problems.map((x) => `  - ${x.path}: ${x.message} (got ${JSON.stringify(x.value)})`).join('\n')}`, problems);
  }
  const key = type.toLowerCase();
  const groups: ParamGroup[] = groupOverrides.map((o) => ({ lr: p.lr as number, weightDecay: p.weight_decay as number, ...o }));
  const b = p.betas as [number, number];
  switch (key) {
    case 'adam':
    case 'adamw':
      return new Adam(ctx, groups, {
        lr: p.lr as number, betas: [b[0], b[1]], eps: p.eps as number, weightDecay: p.weight_decay as number, biasCorrection: p.bias_correction as boolean,
        adamWMode: key === 'adamw' ? true : (p.adam_w_mode as boolean),
      }, CORE_OPTIMIZER_TYPES[key]);
    case 'sgd':
      return new Sgd(ctx, groups, { momentum: p.momentum as number, dampening: p.dampening as number, nesterov: p.nesterov as boolean });
    case 'lion':
      return new Lion(ctx, groups, [b[0], b[1]]);
    default:
      return new Lamb(ctx, groups, { betas: [b[0], b[1]], eps: p.eps as number, biasCorrection: p.bias_correction as boolean, epsInsideSqrt: p.eps_inside_sqrt as boolean, maxCoeff: p.max_coeff as number, minCoeff: p.min_coeff as number });
  }
}
