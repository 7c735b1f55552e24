// The `optimizer` section: `type` is matched case-insensitively (as DeepSpeed does) against core's
// optimizers and those registered plugins contribute; core optimizers' params are checked by name.
import { z } from 'zod';

import type { ConfigProblem } from '../errors.js';
import { KNOWN_PLUGINS, knownPluginForOptimizer } from '../plugin/catalogue.js';
import type { Registry } from '../plugin/registry.js';
import { CORE_OPTIMIZER_TYPES, type CoreOptimizerType } from './core-keys.js';
import { nearest } from './levenshtein.js';
import { issuesToProblems } from './problems.js';
import { missingPluginMessage } from './requirements.js';

const lr = z.number().min(0);
const betas = z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]);
const adamParams = z.strictObject({
  lr: lr.optional(),
  betas: betas.optional(),
  eps: z.number().positive().optional(),
  weight_decay: z.number().min(0).optional(),
  bias_correction: z.boolean().optional(),
  amsgrad: z.boolean().optional(),
  torch_adam: z.boolean().optional(),
  adam_w_mode: z.boolean().optional(),
});

/** Params each core optimizer accepts (the engine's optimizers own the defaults). */
export const CORE_OPTIMIZER_PARAMS: Record<CoreOptimizerType, z.ZodType> = {
  Adam: adamParams,
  AdamW: adamParams,
  SGD: z.strictObject({
    lr: lr.optional(),
    momentum: z.number().min(0).optional(),
    dampening: z.number().optional(),
    weight_decay: z.number().min(0).optional(),
    nesterov: z.boolean().optional(),
  }),
  Lion: z.strictObject({ lr: lr.optional(), betas: betas.optional(), weight_decay: z.number().min(0).optional() }),
  Lamb: z.strictObject({
    lr: lr.optional(),
    betas: betas.optional(),
    eps: z.number().positive().optional(),
    weight_decay: z.number().min(0).optional(),
    bias_correction: z.boolean().optional(),
    eps_inside_sqrt: z.boolean().optional(),
    max_coeff: z.number().optional(),
    min_coeff: z.number().optional(),
  }),
};

export interface OptimizerCheck {
  /** The type spelled as core or the plugin declares it (DeepSpeed lower-cases; we keep the canonical name). */
  type?: string;
  params?: Record<string, unknown>;
  problems: ConfigProblem[];
}

export function checkOptimizer(section: { type: string; params: Record<string, unknown> }, registry?: Registry): OptimizerCheck {
  const problems: ConfigProblem[] = [];
  const params = section.params;
  if ('max_grad_norm' in params) {
    problems.push({
      path: 'optimizer.params.max_grad_norm',
      value: params.max_grad_norm,
      message: "'max_grad_norm' is not supported as an optimizer parameter; use the top-level 'gradient_clipping' key instead",
    });
  }
  const lower = section.type.toLowerCase();
  const core = CORE_OPTIMIZER_TYPES.find((t) => t.toLowerCase() === lower);
  if (core) {
    const { max_grad_norm: _ignored, ...rest } = params;
    const schema = CORE_OPTIMIZER_PARAMS[core];
    const result = schema.safeParse(rest);
    if (!result.success) problems.push(...issuesToProblems(result.error.issues, rest, schema, 'optimizer.params'));
    return { type: core, params: result.success ? (result.data as Record<string, unknown>) : params, problems };
  }
  const fromPlugin = registry?.optimizer(section.type);
  if (fromPlugin) {
    const declared = Object.keys(fromPlugin.plugin.contributes.optimizers ?? {}).find((t) => t.toLowerCase() === lower)!;
    return { type: declared, params, problems };
  }
  const known = knownPluginForOptimizer(section.type);
  if (known) {
    problems.push({ path: 'optimizer.type', value: section.type, message: missingPluginMessage({ path: 'optimizer.type', value: section.type, package: known.package }) });
    return { problems };
  }
  const candidates = [...CORE_OPTIMIZER_TYPES, ...(registry?.optimizerTypes() ?? []), ...KNOWN_PLUGINS.flatMap((p) => p.optimizerTypes)];
  const suggestion = nearest(section.type, candidates);
  problems.push({
    path: 'optimizer.type',
    value: section.type,
    message:
      `unknown optimizer '${section.type}'; ` +
      (suggestion ? `did you mean '${suggestion}'? ` : '') +
      `available: ${candidates.join(', ')} (a plugin may add more; DeepSpeed's fallback to torch.optim does not exist here)`,
    ...(suggestion ? { suggestion } : {}),
  });
  return { problems };
}
