// What the engine and the model-state managers (stage 0 here, ZeRO stages 1-3 in @ds/zero) agree on.
//
// A model-state manager owns the parameters' 16-bit copies, the gradients, the fp32 master weights
// and the optimizer state, and moves them between ranks. The engine owns the step loop (micro steps,
// accumulation boundaries, loss scaling, clipping policy, schedulers, counters, logging). This split
// is DeepSpeed's "optimizer wrapper": ZeRO replaces the manager; the engine does not change.
import type { KernelTable, Module, Runtime, Tensor } from '@ds/tensor';

import type { ProcessGroup } from '../comm/types.js';
import type { DeviceIO } from './device-io.js';
import type { DSConfig } from '../config/core-sections.js';
import type { PluginContext } from '../plugin/types.js';
import type { NamedTensor } from '../checkpoint/safetensors.js';
import type { Optimizer } from '../optim/types.js';

/** The dtype parameters and activations are kept in: DeepSpeed's bf16 / fp16 / fp32 modes. */
export type ParamDtype = 'bf16' | 'f16' | 'f32';

export interface StateManagerArgs {
  module: Module;
  /** Trainable parameters in a fixed order (tied parameters once). */
  params: readonly Tensor[];
  /** Their names in the module tree, same order. */
  names: readonly string[];
  /** Each parameter's index into the optimizer's paramGroups (all 0 without modelParameters groups). */
  groupOf: readonly number[];
  optimizer: Optimizer;
  /** Data-parallel group; null in a single-process run. */
  group: ProcessGroup | null;
  runtime: Runtime;
  /** The kernels of the engine's device (the device every parameter lives on). */
  kernels: KernelTable;
  /** Explicit copies between that device and the host (checkpoints, consolidation). */
  io: DeviceIO;
  paramDtype: ParamDtype;
  /** The validated ds_config. */
  config: DSConfig;
  /** The plugin context (process groups, registry for offload tiers and gradient reducers, logger). */
  ctx: PluginContext;
  /**
   * Per parameter (same order as `params`): whether this rank counts it in the global gradient
   * norm. With model or pipeline parallelism the norm is the sum of every rank's counted squares
   * over ctx.groups.model and ctx.groups.pipe (after the data-parallel reduction made the data
   * ranks equal), so each element of the whole model must be counted by exactly one rank of that
   * slice: a parameter split across the model group by every model rank (each holds other
   * elements), a replicated one by model rank 0 only, and a tied weight's copy on a later pipeline
   * stage not at all (its first stage counts it). All true without model or pipeline parallelism.
   * The overflow flag is reduced over the same groups, so every rank skips the same steps.
   */
  normCounted: readonly boolean[];
}

/**
 * How a parameter is split across the model-parallel group (Megatron's tensor_model_parallel,
 * partition_dim and partition_stride attributes): model rank r holds block r of dimension `dim`;
 * with `stride` s > 1 that dimension is s equal parts, each split across the ranks (a fused QKV).
 */
export interface ModelParallelSplit {
  dim: number;
  stride: number;
}

/**
 * What a module may declare about its own parameters for model and pipeline parallelism. The
 * methods are looked up by name on every module of the model (duck typing, as DeepSpeed reads
 * attributes such as `ds_pipe_replicated` off parameters), so a technique package implements them
 * without importing this type; a module without them declares nothing.
 */
export interface ParallelParameterInfo {
  /** This module's own parameters that are split across the model group, with their split. */
  modelParallelSplits?(): Iterable<readonly [Tensor, ModelParallelSplit]>;
  /** Parameters that another pipeline stage also holds and counts (a tied weight's later copies). */
  pipeReplicatedParameters?(): Iterable<Tensor>;
}

/** One file a module's weights are stored in: the parameters whose names start with `prefix`, with the prefix stripped. */
export interface ModuleFile {
  file: string;
  prefix: string;
}

/**
 * A root module that stores its weights in files of its own naming (a pipeline: one file per layer,
 * DeepSpeed's layer_NN-model_MM-model_states) instead of inside the model-states file. Checkpoints
 * ask it with this rank's model-parallel coordinate; what no file claims stays in the model-states file.
 */
export interface ModuleFileLayout {
  checkpointFiles(modelRank: number): readonly ModuleFile[];
}

/** The model-parallel splits every module of `model` declares. */
export function modelParallelSplits(model: Module): Map<Tensor, ModelParallelSplit> {
  const out = new Map<Tensor, ModelParallelSplit>();
  for (const m of model.modules()) {
    const info = m as Module & ParallelParameterInfo;
    if (typeof info.modelParallelSplits === 'function') for (const [p, split] of info.modelParallelSplits()) out.set(p, split);
  }
  return out;
}

/** The parameters some module of `model` declares pipe-replicated. */
export function pipeReplicatedParameters(model: Module): Set<Tensor> {
  const out = new Set<Tensor>();
  for (const m of model.modules()) {
    const info = m as Module & ParallelParameterInfo;
    if (typeof info.pipeReplicatedParameters === 'function') for (const p of info.pipeReplicatedParameters()) out.add(p);
  }
  return out;
}

/** The root module's own file layout, or null when it keeps its weights in the model-states file. */
export function moduleFileLayout(model: Module): ModuleFileLayout | null {
  return typeof (model as Module & Partial<ModuleFileLayout>).checkpointFiles === 'function' ? (model as Module & ModuleFileLayout) : null;
}

export interface StepInput {
  /** The loss scale the gradients carry (1 without fp16). */
  lossScale: number;
  /** gradient_clipping; 0 disables. */
  clip: number;
}

export interface StepOutput {
  /** An Inf/NaN gradient was found on some rank: nothing was updated. */
  overflow: boolean;
  /** Global L2 norm of the unscaled gradients (NaN on overflow). */
  gradNorm: number;
}

/** Bytes of model states this rank holds, from the memory tracker's point of view. */
export interface ModelStateBytes {
  parameters: number;
  gradients: number;
  optimizerStates: number;
}

/** What one rank writes and reads back in a checkpoint (one file per rank). */
export interface RankState {
  tensors: Map<string, NamedTensor>;
  /** JSON-able metadata: partition layout, dtypes, optimizer step counters. */
  meta: Record<string, unknown>;
}

export interface ModelStateManager {
  /** ZeRO stage: 0 for plain data parallelism. */
  readonly stage: number;
  /** Before a micro step's backward; `boundary` is true on the last micro step of the batch. */
  beforeBackward(boundary: boolean): void;
  /** After a micro step's backward: every gradient reduction begun by beforeBackward has finished. */
  afterBackward(): Promise<void>;
  /**
   * Reduces the gradients accumulated so far over the data-parallel group, as the boundary
   * backward would have (collective over that group). Optional: an engine that must combine
   * gradients across other ranks before the data-parallel reduction (the pipeline's tied weights
   * under ZeRO 1) runs the boundary backward with beforeBackward(false), then calls this; a
   * manager without it cannot defer its reduction, and such an engine says so.
   */
  reduceGradients?(): Promise<void>;
  /** Overflow check, global norm, clipping and the optimizer step on what this rank owns. */
  step(input: StepInput): Promise<StepOutput>;
  /** Zeroes the accumulated gradients. */
  zeroGrad(): void;
  modelStateBytes(): ModelStateBytes;
  /** The whole fp32 master weights by parameter name (collective: every rank must call it). */
  masterWeights(): Promise<Map<string, Float32Array>>;
  /** Full module weights by parameter name in the parameter dtype (collective under stage 3). */
  moduleState(): Promise<Map<string, NamedTensor>>;
  /** Loads full module weights (and refreshes fp32 masters from them when `refreshMaster`). */
  loadModuleState(weights: Map<string, NamedTensor>, refreshMaster: boolean): Promise<void>;
  /** This rank's optimizer-side state (masters and optimizer moments), written to this rank's file. */
  rankState(): RankState;
  /** Whether every data-parallel rank writes its own file (partitioned state) or rank 0 alone. */
  readonly partitioned: boolean;
  /**
   * Restores optimizer-side state saved by `savedWorld` ranks; `read(r)` reads rank r's file. A
   * manager that can re-partition reads every file; one that cannot rejects a different world size.
   */
  loadRankStates(savedWorld: number, read: (rank: number) => RankState): void;
  /** Frees every buffer; the engine is unusable afterwards. */
  destroy(): void;
}
