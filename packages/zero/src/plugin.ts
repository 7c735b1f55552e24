// The plugin: `initialize({ ..., plugins: [zero()] })`. It owns the zero_optimization section and
// contributes the optimizer wrapper that builds a stage 1, 2 or 3 model-state manager in place of
// core's stage 0 whenever zero_optimization.stage >= 1.
import { DSConfigError, type ModelStateManager, type Plugin, type PluginContext, type StateManagerArgs } from '@ds/core';

import { zeroConfigOf, zeroOptimizationSchema, type ZeroConfig } from './config.js';
import { Stage12State } from './stage12.js';
import { Stage3State } from './stage3.js';


/** DeepSpeed's ZERO_SUPPORTED_OPTIMIZERS, as the optimizer types core builds (FusedAdam is Adam/AdamW). */
export const ZERO_SUPPORTED_OPTIMIZERS: readonly string[] = ['Adam', 'AdamW', 'Lion', 'Adagrad'];

/** The checks DeepSpeed's engine makes before it builds a ZeRO optimizer, with its reasons. */
export function checkZeroCompatibility(args: Pick<StateManagerArgs, 'optimizer' | 'config'>, zc: ZeroConfig, ctx: Pick<PluginContext, 'log'>): void {
  const { config, optimizer } = args;
  const supported = ZERO_SUPPORTED_OPTIMIZERS.some((t) => t.toLowerCase() === optimizer.type.toLowerCase());
  if (!supported) {
    if (!config.zero_allow_untested_optimizer) {
      throw new DSConfigError(
        `You are using an untested ZeRO Optimizer (${optimizer.type}). Please add <"zero_allow_untested_optimizer": true> in the configuration file to use it. ` +
          `ZeRO is tested with ${ZERO_SUPPORTED_OPTIMIZERS.join(', ')}.`,
      );
    }
    ctx.log('warn', `**** You are using ZeRO with an untested optimizer (${optimizer.type}), proceed with caution *****`);
  }
  if (!optimizer.elementwise) {
    ctx.log('warn', `${optimizer.type} computes per-tensor quantities; under ZeRO it sees each rank's flat shard of a partition unit, not whole tensors, so its updates differ from stage 0`);
  }
  if (config.pipeline !== undefined && zc.stage >= 2) {
    throw new DSConfigError(`ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism (zero_optimization.stage is ${zc.stage}); use stage 0 or 1 with @ds/pipeline`);
  }
  if (!zc.contiguous_gradients) {
    ctx.log('info', 'zero_optimization.contiguous_gradients=false: gradients are always copied into contiguous bucket buffers here (there is no allocator fragmentation to avoid)');
  }
}

/** Builds the manager for the configured stage (stage >= 1). */
export async function createZeroState(args: StateManagerArgs, ctx: Pick<PluginContext, 'log'>): Promise<ModelStateManager> {
  // Parsed once per engine; the checks and the stages receive the typed section.
  const zc = zeroConfigOf(args.config);
  checkZeroCompatibility(args, zc, ctx);
  const stage = zc.stage;
  if (stage === 1 || stage === 2) return Stage12State.create(args, zc, stage);
  if (stage === 3) return Stage3State.create(args, zc, (m) => ctx.log('warn', m));

  throw new DSConfigError(`zero_optimization.stage ${stage}: the ZeRO plugin handles stages 1-3; stage 0 is core's data parallelism`);
}

/** The @ds/zero plugin. */
export function zero(): Plugin {
  return {
    name: 'zero',
    package: '@ds/zero',
    configSections: { zero_optimization: zeroOptimizationSchema },
    contributes: {
      optimizerWrappers: {
        zero: {
          appliesTo: (config) => zeroConfigOf(config).stage >= 1,
          wrap: (args, ctx) => createZeroState(args, ctx),
        },
      },
    },
  };
}
