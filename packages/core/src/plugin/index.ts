export { createRegistry } from './registry.js';
export type { Registry, Claim } from './registry.js';
export { EXTENSION_POINTS } from './types.js';
export type {
  Plugin,
  PluginContext,
  Contributions,
  ExtensionPoint,
  OptimizerFactory,
  OptimizerWrapper,
  CommBackendFactory,
  AttentionKernel,
  EngineContribution,
  OffloadTierFactory,
  CheckpointWriter,
} from './types.js';
export { KNOWN_PLUGINS, knownPluginByPackage, knownPluginForSection, knownPluginForOptimizer, registerHint } from './catalogue.js';
export type { KnownPlugin } from './catalogue.js';
