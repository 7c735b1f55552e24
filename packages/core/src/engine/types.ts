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
