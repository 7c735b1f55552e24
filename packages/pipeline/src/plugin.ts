// The plugin: `initialize({ model: pipelineModule, plugins: [pipeline()] })`. It owns the `pipeline`
// config section and contributes the engine chosen when the model is a PipelineModule (DeepSpeed
// picks PipelineEngine the same way); the engine's topology(model) gives initialize() the module's
// stage count as the pipe degree, so the topology needs no separate option (DeepSpeed's num_stages).
import type { EngineContribution, Plugin } from '@ds/core';
import type { Module } from '@ds/tensor';

import { pipelineSchema } from './config.js';
import { PipelineEngine } from './engine.js';
import { PipelineModule } from './module.js';

const engine: EngineContribution & { topology(model: Module): { pipe: number } | undefined } = {
  appliesTo: (model) => model instanceof PipelineModule,
  create: ({ parts }) => PipelineEngine.create(parts),
  topology: (model) => (model instanceof PipelineModule ? { pipe: model.numStages } : undefined),
};

export function pipeline(): Plugin {
  return {
    name: 'pipeline',
    package: '@ds/pipeline',
    configSections: { pipeline: pipelineSchema },
    contributes: { engines: { pipeline: engine } },
  };
}
