// The `optimizer` section: `type` is matched case-insensitively (as DeepSpeed does) against core's
// optimizers and those registered plugins contribute; core optimizers' params are checked against
// the optimizer factory's table (optim/params.ts).
import type { ConfigProblem } from '../errors.js';
import { KNOWN_PLUGINS, knownPluginForOptimizer } from '../plugin/catalogue.js';
import type { Registry } from '../plugin/registry.js';
import { checkCoreOptimizerParams, CORE_OPTIMIZER_TYPES as CORE_NAMES, maxGradNormProblem } from '../optim/params.js';
import { CORE_OPTIMIZER_TYPES } from './core-keys.js';
import { nearest } from './levenshtein.js';
import { missingPluginMessage } from './requirements.js';

export interface OptimizerCheck {
  /** The type spelled as core or the plugin declares it (DeepSpeed lower-cases; we keep the canonical name). */
  type?: string;
  params?: Record<string, unknown>;
  problems: ConfigProblem[];
}

export function checkOptimizer(section: { type: string; params: Record<string, unknown> }, registry?: Registry): OptimizerCheck {
  const problems: ConfigProblem[] = [];
  const params = section.params;
  const lower = section.type.toLowerCase();
  // A core type: the optimizer factory's own table and checks (optim/params.ts), one list of keys for both.
  const core = checkCoreOptimizerParams(section.type, params);
  if (core) return { type: CORE_NAMES[lower], params, problems: core.problems };
  if ('max_grad_norm' in params) problems.push(maxGradNormProblem(params.max_grad_norm));
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
