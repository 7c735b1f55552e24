// The plugin: `initialize({ ..., plugins: [zero(), offloadNvme()] })`. It owns the `aio` section and
// contributes the `cpu` and `nvme` offload tiers that ZeRO asks the registry for by the device of
// zero_optimization.offload_optimizer and offload_param.
import type { OffloadTier, OffloadTierOptions, Plugin, PluginContext } from '@ds/core';

import { aioConfigOf, aioSchema } from './aio-config.js';
import { AioEngine, aioOptionsOf, type IoEngine } from './engine.js';
import { tierSectionOf } from './offload-section.js';
import { CpuTier } from './tiers/cpu.js';
import { NvmeTier } from './tiers/nvme.js';

export interface OffloadNvmeOptions {
  /**
   * Makes the I/O engine of an nvme tier from the `aio` section's engine options; default: the
   * native engine. Tests pass the reference twin (ReferenceIo) to compare against it.
   */
  ioEngine?: (opts: ReturnType<typeof aioOptionsOf>) => IoEngine;
}

export function createCpuTier(options: OffloadTierOptions, ctx: Pick<PluginContext, 'runtime' | 'log'>): OffloadTier {
  const section = tierSectionOf(options, 'cpu');
  if (section.nvmePath !== null) ctx.log('warn', `zero_optimization.offload_${options.kind}.nvme_path has no effect with device 'cpu' (the state stays in host memory), as in DeepSpeed`);
  // These two choose which parameter units stay in host memory under 'nvme'; with 'cpu' all of them do.
  for (const [key, dflt] of [['buffer_size', 1e8], ['max_in_cpu', 1e9]] as const) {
    const v = options.section[key];
    if (options.kind === 'param' && v !== undefined && v !== dflt) ctx.log('warn', `zero_optimization.offload_param.${key} has no effect with device 'cpu' (every parameter block stays in host memory)`);
  }
  return new CpuTier(ctx.runtime.tracker, section.pinMemory);
}

export function createNvmeTier(options: OffloadTierOptions, ctx: Pick<PluginContext, 'rank' | 'log'>, make: OffloadNvmeOptions['ioEngine'] = (o) => new AioEngine(o)): OffloadTier {
  tierSectionOf(options, 'nvme');
  const aio = aioConfigOf(options.aio);
  const io = make(aioOptionsOf(aio));
  try {
    const tier = NvmeTier.create({ options, rank: ctx.rank, io, log: ctx.log });
    const fallback = io instanceof AioEngine && io.fallbackReason ? ` (pread/pwrite threads: ${io.fallbackReason})` : '';
    ctx.log('info', `offload ${options.kind}: nvme tier ${tier.path} on ${io.backend}${fallback}, aio block_size ${aio.block_size}, queue_depth ${aio.queue_depth}, intra_op_parallelism ${aio.intra_op_parallelism}`);
    return tier;
  } catch (e) {
    io.close();
    throw e;
  }
}

/** The @ds/offload-nvme plugin. */
export function offloadNvme(opts: OffloadNvmeOptions = {}): Plugin {
  return {
    name: 'offload-nvme',
    package: '@ds/offload-nvme',
    configSections: { aio: aioSchema },
    contributes: {
      offloadTiers: {
        cpu: (options, ctx) => createCpuTier(options, ctx),
        nvme: (options, ctx) => createNvmeTier(options, ctx, opts.ioEngine),
      },
    },
  };
}
