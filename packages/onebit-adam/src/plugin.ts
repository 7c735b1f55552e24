// The plugin: `registry.use(onebitAdam())` or `initialize({ plugins: [onebitAdam()] })`.
//
// It contributes the three optimizers (OneBitAdam, ZeroOneAdam, OneBitLamb), a gradient reducer
// and an optimizer wrapper, all keyed on the config's optimizer type:
//   - the reducer does core's all-reduce during the warm-up and nothing in the compressed phase (the
//     optimizer then runs the compressed all-reduce of the momentum itself, as DeepSpeed turns off
//     the engine's backward all-reduce);
//   - the wrapper is core's stage 0 plus per-rank error buffers in checkpoints (state.ts).
// DeepSpeed asserts that these optimizers are not combined with ZeRO: ZeRO's optimizer wrapper
// would own the gradients and reduce-scatter them, so the momentum this optimizer compresses would
// not be the local one. A ZeRO stage >= 1 is rejected here with that reason.
import { DSConfigError, standardUnitReduce, type DSConfig, type OptimizerContext, type Plugin, type PluginContext } from '@ds/core';

import { CompressedAllReduce } from './compressed-allreduce.js';
import { nativeOnebitKernels } from './native/load.js';
import type { CompressingOptimizer } from './compressing.js';
import { OnebitAdam } from './onebit-adam.js';
import { checkOnebitParams, ONEBIT_TYPE_NAMES } from './params.js';
import { OnebitState } from './state.js';
import { ZeroOneAdam } from './zero-one-adam.js';
import { OnebitLamb } from './onebit-lamb.js';

export const PACKAGE = '@ds/onebit-adam';

function isOnebit(config: DSConfig): boolean {
  const type = config.optimizer?.type;
  return typeof type === 'string' && type.toLowerCase() in ONEBIT_TYPE_NAMES;
}

function zeroStage(config: DSConfig): number {
  const zero = config.zero_optimization as { stage?: unknown } | undefined;
  return typeof zero?.stage === 'number' ? zero.stage : 0;
}

function checkCombination(type: string, config: DSConfig): void {
  const stage = zeroStage(config);
  if (stage >= 1) {
    throw new DSConfigError(
      `optimizer ${type} with zero_optimization.stage ${stage}: the 1-bit optimizers are not compatible with ZeRO (DeepSpeed asserts the same): ZeRO's optimizer wrapper would own and reduce-scatter the gradients, so the local momentum that ${type} compresses would not exist; set zero_optimization.stage to 0 or use Adam/AdamW/Lamb with ZeRO`,
    );
  }
}

function isCompressing(o: unknown): o is CompressingOptimizer {
  return typeof o === 'object' && o !== null && 'localGradients' in o && typeof (o as CompressingOptimizer).rankExtras === 'function';
}

function onebitAdamFactory(params: Readonly<Record<string, unknown>>, optCtx: OptimizerContext, ctx: PluginContext): OnebitAdam {
  checkCombination('OneBitAdam', ctx.config);
  const p = checkOnebitParams('OneBitAdam', params);
  const comm = commFor('OneBitAdam', p, ctx);
  const b = p.betas as [number, number];
  return new OnebitAdam(
    optCtx,
    [{ lr: p.lr as number, weightDecay: p.weight_decay as number }],
    { betas: [b[0], b[1]], eps: p.eps as number, freezeStep: p.freeze_step as number },
    comm,
    nativeOnebitKernels(),
  );
}

/** The data-parallel group's compressed all-reduce (null on one rank), with the comm_backend_name note. */
function commFor(type: string, p: Record<string, unknown>, ctx: PluginContext): CompressedAllReduce | null {
  const group = ctx.groups.data;
  const backend = p.comm_backend_name as string;
  if (group && backend !== group.backend) {
    ctx.log('info', `${type}: comm_backend_name '${backend}' maps to the active comm backend '${group.backend}' (the compressed all-reduce runs over the data-parallel group's all-to-all and all-gather)`);
  }
  return group && group.size > 1 ? new CompressedAllReduce(group, nativeOnebitKernels()) : null;
}

function zeroOneAdamFactory(params: Readonly<Record<string, unknown>>, optCtx: OptimizerContext, ctx: PluginContext): ZeroOneAdam {
  checkCombination('ZeroOneAdam', ctx.config);
  const p = checkOnebitParams('ZeroOneAdam', params);
  const b = p.betas as [number, number];
  return new ZeroOneAdam(
    optCtx,
    [{ lr: p.lr as number, weightDecay: p.weight_decay as number }],
    {
      betas: [b[0], b[1]], eps: p.eps as number, varFreezeStep: p.var_freeze_step as number, varUpdateScaler: p.var_update_scaler as number,
      localStepScaler: p.local_step_scaler as number, localStepClipper: p.local_step_clipper as number,
    },
    commFor('ZeroOneAdam', p, ctx),
  );
}

function onebitLambFactory(params: Readonly<Record<string, unknown>>, optCtx: OptimizerContext, ctx: PluginContext): OnebitLamb {
  checkCombination('OneBitLamb', ctx.config);
  const p = checkOnebitParams('OneBitLamb', params);
  const b = p.betas as [number, number];
  const n = (k: string) => p[k] as number;
  return new OnebitLamb(
    optCtx,
    [{ lr: n('lr'), weightDecay: n('weight_decay') }],
    {
      betas: [b[0], b[1]], eps: n('eps'), freezeStep: n('freeze_step'), maxCoeff: n('max_coeff'), minCoeff: n('min_coeff'), coeffBeta: n('coeff_beta'),
      factorMax: n('factor_max'), factorMin: n('factor_min'), factorThreshold: n('factor_threshold'),
    },
    commFor('OneBitLamb', p, ctx),
  );
}

/** The 1-bit optimizers plugin. */
export function onebitAdam(): Plugin {
  // Which optimizer each engine's reducer follows, by the PluginContext initialize() hands to both.
  const optimizers = new WeakMap<PluginContext, CompressingOptimizer>();
  return {
    name: 'onebit-adam',
    package: PACKAGE,
    contributes: {
      optimizers: {
        OneBitAdam: onebitAdamFactory,
        ZeroOneAdam: zeroOneAdamFactory,
        OneBitLamb: onebitLambFactory,
      },
      optimizerWrappers: {
        onebit: {
          appliesTo: (config) => isOnebit(config) && zeroStage(config) === 0,
          async wrap(args, ctx) {
            if (!isCompressing(args.optimizer)) {
              throw new DSConfigError(
                `optimizer.type is ${ctx.config.optimizer?.type}, but the optimizer passed to initialize() (${args.optimizer.type}) is not a 1-bit optimizer; remove the optimizer option so that the config builds it, or change optimizer.type`,
              );
            }
            if (ctx.device !== 'cpu') {
              // The compression and update loops are JavaScript over host memory.
              throw new DSConfigError(
                `optimizer.type ${args.optimizer.type} runs on the cpu device only for now, but the model is on '${ctx.device}'; train on cpu, or use Adam/AdamW/Lamb/Lion/SGD on '${ctx.device}'`,
              );
            }
            optimizers.set(ctx, args.optimizer);
            return OnebitState.create(args, args.optimizer);
          },
        },
      },
      gradientReducers: {
        onebit: {
          appliesTo: isOnebit,
          create(spec, ctx) {
            const optimizer = optimizers.get(ctx);
            if (!optimizer) throw new DSConfigError(`the 1-bit gradient reducer found no 1-bit optimizer for this engine; register ${PACKAGE}'s onebitAdam() plugin and let the config build the optimizer`);
            if (spec.collective !== 'allReduce') throw new DSConfigError('the 1-bit gradient reducer needs the all-reduce of stage 0 (ZeRO stages are not supported with 1-bit optimizers)');
            const standard = standardUnitReduce(spec);
            return (message, unit, keep) => (optimizer.localGradients ? { work: null, finish: () => {} } : standard(message, unit, keep));
          },
        },
      },
    },
  };
}
