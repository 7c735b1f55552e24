// The `optimizer.params` of the three 1-bit optimizers: DeepSpeed's keys and defaults
// (runtime/fp16/onebit/{adam,zoadam,lamb}.py), each with the rule its value must meet. Keys that
// DeepSpeed accepts but ignores are accepted only with the value that matches what it does, so that
// no key is accepted without effect: its update never applies bias correction and always adds eps
// outside the square root.
import { DSConfigError, type ConfigProblem } from '@ds/core';

type Rule = (v: unknown) => string | null;

const num = (ok: (x: number) => boolean, what: string): Rule => (v) => (typeof v === 'number' && Number.isFinite(v) && ok(v) ? null : `must be ${what}`);
const nonNegative = num((x) => x >= 0, 'a number >= 0');
const positive = num((x) => x > 0, 'a number > 0');
const count = num((x) => Number.isInteger(x) && x >= 0, 'an integer >= 0');
const positiveCount = num((x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
const betas: Rule = (v) => (Array.isArray(v) && v.length === 2 && v.every((b) => typeof b === 'number' && b >= 0 && b < 1) ? null : 'must be two numbers in [0, 1), e.g. [0.9, 0.999]');
const only = (want: boolean, why: string): Rule => (v) => (v === want ? null : typeof v === 'boolean' ? why : 'must be true or false');
const backend: Rule = (v) =>
  typeof v === 'string' && ['nccl', 'mpi', 'hccl', 'compressed', 'cpu'].includes(v) ? null : "must be 'nccl', 'mpi', 'hccl', 'compressed' or 'cpu'";

interface Spec {
  readonly default: unknown;
  readonly rule: Rule;
}

const common: Record<string, Spec> = {
  lr: { default: 1e-3, rule: nonNegative },
  betas: { default: [0.9, 0.999], rule: betas },
  eps: { default: 1e-8, rule: positive },
  weight_decay: { default: 0, rule: nonNegative },
  bias_correction: {
    default: false,
    rule: only(false, "DeepSpeed's 1-bit optimizers never apply bias correction (the flag is unused in their update); set it to false or remove it"),
  },
  eps_inside_sqrt: {
    default: false,
    rule: only(false, "DeepSpeed's 1-bit optimizers always add eps outside the square root (the flag is unused in their update); set it to false or remove it"),
  },
  amsgrad: { default: false, rule: only(false, '1-bit optimizers do not support the AMSGrad variant (DeepSpeed raises the same); remove it') },
  cuda_aware: {
    default: false,
    rule: only(false, 'cuda_aware lets CUDA-aware MPI send GPU buffers directly; on the cpu device there are no GPU buffers to send, so set it to false (buffers are staged through host memory, which is what happens here)'),
  },
  comm_backend_name: { default: 'nccl', rule: backend },
};

export const ONEBIT_SPECS: Readonly<Record<string, Readonly<Record<string, Spec>>>> = {
  onebitadam: { ...common, freeze_step: { default: 100000, rule: count } },
  zerooneadam: {
    ...common,
    var_freeze_step: { default: 100000, rule: count },
    var_update_scaler: { default: 16, rule: positiveCount },
    local_step_scaler: { default: 32678, rule: positiveCount },
    local_step_clipper: { default: 16, rule: positiveCount },
  },
  onebitlamb: {
    ...common,
    freeze_step: { default: 100000, rule: count },
    max_coeff: { default: 10, rule: positive },
    min_coeff: { default: 0.01, rule: nonNegative },
    coeff_beta: { default: 0.9, rule: num((x) => x >= 0 && x < 1, 'a number in [0, 1)') },
    factor_max: { default: 4, rule: positive },
    factor_min: { default: 0.5, rule: nonNegative },
    factor_threshold: { default: 0.1, rule: nonNegative },
  },
};

export const ONEBIT_TYPE_NAMES: Readonly<Record<string, string>> = { onebitadam: 'OneBitAdam', zerooneadam: 'ZeroOneAdam', onebitlamb: 'OneBitLamb' };

/** Checks `params` for a 1-bit type (any case) and returns them over the defaults; all problems at once in one DSConfigError. */
export function checkOnebitParams(type: string, params: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const key = type.toLowerCase();
  const specs = ONEBIT_SPECS[key];
  if (!specs) throw new DSConfigError(`optimizer type '${type}' is not one of @ds/onebit-adam's (OneBitAdam, ZeroOneAdam, OneBitLamb)`);
  const user = params ?? {};
  const problems: ConfigProblem[] = [];
  for (const [k, v] of Object.entries(user)) {
    if (k === 'max_grad_norm') {
      problems.push({ path: 'optimizer.params.max_grad_norm', value: v, message: "'max_grad_norm' is not supported as an optimizer parameter; use the top-level 'gradient_clipping' key instead" });
    } else if (!(k in specs)) {
      problems.push({ path: `optimizer.params.${k}`, value: v, message: `is not a parameter of ${ONEBIT_TYPE_NAMES[key]} (allowed: ${Object.keys(specs).join(', ')})` });
    }
  }
  const values: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(specs)) {
    const v = k in user ? user[k] : spec.default;
    const why = spec.rule(v);
    if (why) problems.push({ path: `optimizer.params.${k}`, value: v, message: why });
    values[k] = v;
  }
  if (key === 'onebitlamb' && problems.length === 0) {
    if ((values.min_coeff as number) > (values.max_coeff as number)) problems.push({ path: 'optimizer.params.min_coeff', value: values.min_coeff, message: 'must not exceed max_coeff' });
    if ((values.factor_min as number) > (values.factor_max as number)) problems.push({ path: 'optimizer.params.factor_min', value: values.factor_min, message: 'must not exceed factor_max' });
  }
  if (problems.length > 0) {
    throw new DSConfigError(`optimizer ${ONEBIT_TYPE_NAMES[key]}: ${problems.length} problem(s):\n${problems.map((x) => `  - ${x.path}: ${x.message} (got ${JSON.stringify(x.value)})`).join('\n')}`, problems);
  }
  return values;
}
