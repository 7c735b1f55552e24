// The plugin: `initialize({ model, plugins: [pipeline()] })`. It owns the `pipeline` config section
// and contributes the engine chosen when the model is a PipelineModule (DeepSpeed picks
// PipelineEngine the same way) or holds tensor-parallel layers. Its topology(model) gives
// initialize() the module's stage count as the pipe degree and the layers' tensor-parallel degree as
// the model degree, so the topology needs no separate option (DeepSpeed's num_stages and
// mpu); create() binds the topology's model-parallel group to the layers before building the engine.
import type { EngineContribution, EngineParts, Plugin } from '@ds/core';
import type { Module } from '@ds/tensor';

import { pipelineSchema } from './config.js';
import { PipelineEngine } from './engine.js';
import { PipelineModule } from './module.js';
import { bindTensorParallel, tensorParallelContexts, tensorParallelDegree } from './tensor-parallel/context.js';
import { TensorParallelEngine } from './tensor-parallel/engine.js';

const declaredTp = (model: Module) => (model instanceof PipelineModule ? model.tensorParallel : undefined);

const engine: EngineContribution = {
  appliesTo: (model) => model instanceof PipelineModule || tensorParallelContexts(model).length > 0,
  create: async ({ parts }) => {
    bindTensorParallel(parts.module, parts.groups, declaredTp(parts.module));
    const built = parts.module instanceof PipelineModule ? await PipelineEngine.create(parts) : TensorParallelEngine.create(parts);
    await settleSetup(parts.groups);
    return built;
  },
  topology: (model) => {
    const isPipe = model instanceof PipelineModule;
    if (!isPipe && tensorParallelContexts(model).length === 0) return undefined;
    const degree = tensorParallelDegree(model, declaredTp(model));
    return isPipe ? { pipe: model.numStages, model: degree } : { model: degree };
  },
};

/**
 * Every rank waits here until all have finished setting up. The layers' collectives block the
 * thread (waitSync) from their first forward, and a rank blocked that way does not run its event
 * loop; rank 0's loop serves the rendezvous store, which a slower rank may still need for its last
 * groups (the tie groups). The model group's first op also runs here, where every rank can still await.
 */
async function settleSetup(groups: EngineParts['groups']): Promise<void> {
  if (groups.model) await groups.model.barrier();
  if (groups.world) await groups.world.barrier();
}

export function pipeline(): Plugin {
  return {
    name: 'pipeline',
    package: '@ds/pipeline',
    configSections: { pipeline: pipelineSchema },
    contributes: { engines: { pipeline: engine } },
  };
}
