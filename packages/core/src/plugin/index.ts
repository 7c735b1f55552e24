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
  CommBackendOptions,
  AttentionKernelContribution,
  EngineArgs,
  EngineContribution,
  OffloadTierFactory,
  GradientReducerContribution,
} from './types.js';
export { KNOWN_PLUGINS, knownPluginByPackage, knownPluginForBackend, knownPluginForSection, knownPluginForOptimizer, registerHint } from './catalogue.js';
export type { KnownPlugin } from './catalogue.js';
