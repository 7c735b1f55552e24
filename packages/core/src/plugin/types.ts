// The shapes a plugin contributes, and the context every contribution receives. Each extension point
// here is consumed by initialize() (engine/initialize.ts) or by the model-state managers it builds;
// one that nothing consumes is removed, not left declared.
import type { AttentionKernel, Module, Runtime } from '@ds/tensor';
import type { ZodType } from 'zod';

import type { Distributed } from '../comm/init.js';
import type { ParallelGroups } from '../comm/topology.js';
import type { CommBackend } from '../comm/types.js';
import type { DSConfig } from '../config/core-sections.js';
import type { CoreEnv } from '../env.js';
import type { Engine, EngineParts } from '../engine/engine.js';
import type { ReducerSpec, UnitReduce } from '../engine/reduction.js';
import type { ModelStateManager, StateManagerArgs } from '../engine/types.js';
import type { OffloadTier, OffloadTierOptions } from '../offload/tier.js';
import type { Optimizer, OptimizerContext } from '../optim/types.js';
import type { Registry } from './registry.js';

/** What every contribution receives when initialize() calls it: the config, the process groups, the device. */
export interface PluginContext {
  /** The validated ds_config (snake_case keys, defaults filled in, plugin sections included). */
  readonly config: DSConfig;
  /** Global rank and world size. */
  readonly rank: number;
  readonly worldSize: number;
  /** The device the model trains on ('cpu'). */
  readonly device: string;
  readonly runtime: Runtime;
  /** The job's comm context; null in a single-process run. */
  readonly dist: Distributed | null;
  /** The pipe x data x model topology and this rank's group on each axis. */
  readonly groups: ParallelGroups;
  /** The registry, for contributions that need another (a ZeRO state asks for its offload tier). */
  readonly registry: Registry;
  /** Logs through the caller's logger (rank 0); plugins never print directly. */
  readonly log: (level: 'debug' | 'info' | 'warn', message: string) => void;
}

/** Builds an optimizer from the config's `optimizer.params` (e.g. OneBitAdam). `params` are validated by the plugin. */
export type OptimizerFactory = (params: Readonly<Record<string, unknown>>, optimizerCtx: OptimizerContext, ctx: PluginContext) => Optimizer;

/**
 * Replaces core's stage-0 model-state manager (ZeRO). `appliesTo` reads the config so the engine
 * asks the registry which wrapper handles this config instead of switching on plugin names.
 */
export interface OptimizerWrapper {
  appliesTo(config: DSConfig): boolean;
  /** Builds the model-state manager that replaces stage 0 (flat buffers, reductions, the step). */
  wrap(args: StateManagerArgs, ctx: PluginContext): ModelStateManager | Promise<ModelStateManager>;
}

/** What a comm backend factory is given: the environment settings core read (timeouts, transports). */
export interface CommBackendOptions {
  readonly env: CoreEnv;
}

/**
 * Makes the CommBackend of a name (`cpu` is core's own, `mpi`, `nccl` come from plugins). Called
 * before the process group exists, so it gets the environment, not a PluginContext. A backend that
 * cannot run here (no library, no device) throws one sentence saying what is missing.
 */
export type CommBackendFactory = (options: CommBackendOptions) => CommBackend | Promise<CommBackend>;

/**
 * An attention implementation selectable by name: a module built with `kernel: 'name'` gets it, and
 * when `appliesTo(config)` holds (its config section is on) every attention module of the model does.
 */
export interface AttentionKernelContribution {
  appliesTo?(config: DSConfig): boolean;
  create(ctx: PluginContext): AttentionKernel;
}

/** Everything initialize() built for an engine: the parts, plus the model it was given. */
export interface EngineArgs {
  readonly parts: EngineParts;
}

/** An engine that takes over for some models (the pipeline engine for a PipelineModule). */
export interface EngineContribution {
  appliesTo(model: Module, config: DSConfig): boolean;
  /**
   * The parallel degrees the model itself fixes (a PipelineModule's stage count, as DeepSpeed takes
   * num_stages from the module), or undefined for models it does not handle. initialize() consults
   * it before building the topology; a `topology` option that disagrees is a DSConfigError.
   */
  topology?(model: Module): { pipe?: number; model?: number } | undefined;
  /** Returns an Engine (a subclass adds its own entry points, e.g. trainBatch()). */
  create(args: EngineArgs, ctx: PluginContext): Engine | Promise<Engine>;
}

/** Makes an offload tier (`cpu`, `nvme`) for an `offload_optimizer` / `offload_param` section. */
export type OffloadTierFactory = (options: OffloadTierOptions, ctx: PluginContext) => OffloadTier | Promise<OffloadTier>;

/**
 * Replaces the gradient reduction of every stage (1-bit Adam's compressed all-reduce; a pipeline's
 * tied-weight reduction). `appliesTo` reads the config; the reducer gets the same spec core's own would.
 */
export interface GradientReducerContribution {
  appliesTo(config: DSConfig): boolean;
  create(spec: ReducerSpec, ctx: PluginContext): UnitReduce;
}

/** Extension points, each a map from a name (the key the config or the engine asks for) to a value. */
export interface Contributions {
  /** Keyed by the optimizer's config `type`, matched case-insensitively like DeepSpeed does. */
  optimizers?: Readonly<Record<string, OptimizerFactory>>;
  optimizerWrappers?: Readonly<Record<string, OptimizerWrapper>>;
  commBackends?: Readonly<Record<string, CommBackendFactory>>;
  attentionKernels?: Readonly<Record<string, AttentionKernelContribution>>;
  engines?: Readonly<Record<string, EngineContribution>>;
  offloadTiers?: Readonly<Record<string, OffloadTierFactory>>;
  gradientReducers?: Readonly<Record<string, GradientReducerContribution>>;
}

export type ExtensionPoint = keyof Contributions;

export const EXTENSION_POINTS: readonly ExtensionPoint[] = [
  'optimizers',
  'optimizerWrappers',
  'commBackends',
  'attentionKernels',
  'engines',
  'offloadTiers',
  'gradientReducers',
];

/** A plugin as the user registers it: `registry.use(zero())`. */
export interface Plugin {
  /** Short name, e.g. "zero". */
  readonly name: string;
  /** The npm package that provides it, e.g. "@ds/zero". */
  readonly package: string;
  /** ds_config top-level sections this plugin owns, each validated by its zod schema. */
  readonly configSections?: Readonly<Record<string, ZodType>>;
  readonly contributes: Contributions;
}
