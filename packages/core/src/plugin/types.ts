// The shapes a plugin contributes. The engine, optimizers and tensors these talk about are built
// later; until then every contribution is typed with the narrowest generic interface that lets the
// registry store it and the engine call it. The engine refines them (by declaration merging or by
// narrowing the `unknown`s) without changing a plugin's outward shape.
import type { ZodType } from 'zod';

import type { ModelStateManager, StateManagerArgs } from '../engine/types.js';

/** What every contribution receives when the engine calls it: the world, the device and the config. */
export interface PluginContext {
  /** The validated ds_config (snake_case keys, defaults filled in). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly rank: number;
  readonly worldSize: number;
  readonly device: string;
  /** Logs from the caller's logger; plugins never print directly. */
  readonly log: (level: 'debug' | 'info' | 'warn', message: string) => void;
}

/** Builds an optimizer from the config's `optimizer.params` (e.g. OneBitAdam). */
export type OptimizerFactory = (params: readonly unknown[], options: Readonly<Record<string, unknown>>, ctx: PluginContext) => unknown;

/**
 * Wraps the base optimizer (ZeRO). `appliesTo` reads the config so the engine asks the registry
 * which wrapper handles this config instead of switching on plugin names.
 */
export interface OptimizerWrapper {
  appliesTo(config: Readonly<Record<string, unknown>>): boolean;
  /** Builds the model-state manager that replaces stage 0 (flat buffers, reductions, the step). */
  wrap(args: StateManagerArgs, ctx: PluginContext): ModelStateManager | Promise<ModelStateManager>;
}

/** Creates a process group for a communication backend (`cpu`, `nccl`, ...). */
export type CommBackendFactory = (options: Readonly<Record<string, unknown>>, ctx: PluginContext) => unknown | Promise<unknown>;

/** An attention implementation selectable by name (e.g. block-sparse attention). */
export interface AttentionKernel {
  readonly devices: readonly string[];
  create(options: Readonly<Record<string, unknown>>, ctx: PluginContext): unknown;
}

/** An engine that takes over for some models (the pipeline engine for a PipelineModule). */
export interface EngineContribution {
  appliesTo(model: unknown, config: Readonly<Record<string, unknown>>): boolean;
  create(args: Readonly<Record<string, unknown>>, ctx: PluginContext): unknown;
}

/** A place to move optimizer state or parameters to (`cpu`, `nvme`). */
export type OffloadTierFactory = (options: Readonly<Record<string, unknown>>, ctx: PluginContext) => unknown;

/** Writes (and reads back) one kind of checkpoint state, e.g. partitioned ZeRO shards. */
export interface CheckpointWriter {
  save(dir: string, state: unknown, ctx: PluginContext): Promise<void>;
  load(dir: string, ctx: PluginContext): Promise<unknown>;
}

/** Extension points, each a map from a name (the key the config or the engine asks for) to a value. */
export interface Contributions {
  /** Keyed by the optimizer's config `type`, matched case-insensitively like DeepSpeed does. */
  optimizers?: Readonly<Record<string, OptimizerFactory>>;
  optimizerWrappers?: Readonly<Record<string, OptimizerWrapper>>;
  commBackends?: Readonly<Record<string, CommBackendFactory>>;
  attentionKernels?: Readonly<Record<string, AttentionKernel>>;
  engines?: Readonly<Record<string, EngineContribution>>;
  offloadTiers?: Readonly<Record<string, OffloadTierFactory>>;
  checkpointWriters?: Readonly<Record<string, CheckpointWriter>>;
}

export type ExtensionPoint = keyof Contributions;

export const EXTENSION_POINTS: readonly ExtensionPoint[] = [
  'optimizers',
  'optimizerWrappers',
  'commBackends',
  'attentionKernels',
  'engines',
  'offloadTiers',
  'checkpointWriters',
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
