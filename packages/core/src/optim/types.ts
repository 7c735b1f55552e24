// The optimizer contract: optimizers update f32 master weights in place from gradients, slot by slot.
//
// A slot is one contiguous run of parameters: the whole flat buffer (elementwise optimizers: Adam,
// SGD, Lion, where it does not matter where one tensor ends), one tensor (Lamb's trust ratio is per
// tensor), or a rank's partition of a flat buffer (ZeRO). The engine decides the slots; the optimizer
// keeps its state (moments) per slot index, so the engine must pass the same slots in the same order
// on every step.
//
// Slots and state live on one device: host typed arrays on cpu, DeviceArrays on sim or cuda. The
// optimizers change them only through `ctx.kernels` (the table of that device), so the same code
// steps either; state crosses to the host only in stateDict() / loadStateDict(), through
// `ctx.transfer`.
import type { F32, FArray, FloatDType, KernelTable, U16 } from '@ds/tensor';

export interface OptimizerSlot {
  /** f32 master weights, updated in place. */
  master: F32;
  /** Gradient of the same length, in gradDtype. */
  grad: FArray;
  gradDtype: FloatDType;
  /** Index into `paramGroups` (learning rate, weight decay, ...). */
  group: number;
  /** Optional 16-bit copy of the updated weights, written after the update (by the fused kernel where there is one). */
  out16?: U16;
  out16Dtype?: 'bf16' | 'f16';
}

/** One parameter group's hyper-parameters. Schedulers write `lr` (and `betas` for momentum cycling). */
export interface ParamGroup {
  lr: number;
  weightDecay: number;
  betas?: [number, number];
  momentum?: number;
  [key: string]: unknown;
}

export interface StepOptions {
  /** Multiplies every gradient before use: 1 / lossScale, times the clipping coefficient. */
  gradScale: number;
  /**
   * The index of slots[0] among all the slots the optimizer keeps state for (default 0). Stepping a
   * sub-group passes its subrange of the slots with its first index, so each slot keeps its state.
   */
  firstSlot?: number;
}

/** Optimizer state of one slot as a state dict carries it: named f32 host arrays plus a step counter. */
export interface SlotState {
  step: number;
  tensors: Record<string, Float32Array>;
}

export interface OptimizerStateDict {
  type: string;
  paramGroups: ParamGroup[];
  slots: SlotState[];
}

export interface Optimizer {
  /** DeepSpeed's type name, e.g. "AdamW". */
  readonly type: string;
  readonly paramGroups: ParamGroup[];
  /** True when the update of one element depends on that element alone (slots may be any split). */
  readonly elementwise: boolean;
  /** Names of the per-element f32 state arrays (bytes per parameter = 4 * stateNames.length). */
  readonly stateNames: readonly string[];
  step(slots: readonly OptimizerSlot[], options: StepOptions): void;
  /**
   * Makes `tensors` (one array per state name, of the slot's length) the state of slot `index`, in
   * place of the optimizer's own; the step counter is kept. For arrays someone else owns, such as an
   * offload tier's staging buffers, adopted again before each step of that slot.
   */
  adoptState(index: number, tensors: Readonly<Record<string, F32>>): void;
  stateDict(): OptimizerStateDict;
  loadStateDict(state: OptimizerStateDict): void;
}

/** Copies of device-resident state across the host boundary (a device's copyToHost / copyFromHost). */
export interface StateTransfer {
  /** A new host array holding a's elements; the state dict keeps it. */
  toHost(a: F32): Float32Array;
  /** Writes src's elements into dst (of the same length). */
  fromHost(src: Float32Array, dst: F32): void;
}

export interface OptimizerContext {
  /** The kernel table of the device the slots and the state live on. */
  kernels: KernelTable;
  /**
   * Allocates a zeroed f32 state array of n elements on the slots' device. The engine passes one
   * that counts the bytes under 'optimizer_states' in the memory tracker; default: a plain Float32Array.
   */
  allocState?: (n: number, name: string) => F32;
  /**
   * Allocates an f32 scratch array of n elements on the slots' device (SGD, Lion and Lamb keep
   * intermediate results there; each is allocated when the longest slot so far first shows up, then
   * kept). Default: allocState, else a plain Float32Array.
   */
  allocScratch?: (n: number, name: string) => F32;
  /**
   * Moves state arrays that live on a device to and from the host, for stateDict() and
   * loadStateDict(). Host arrays are copied directly and never reach it. Without it, a state dict of
   * device state is a DSDeviceError.
   */
  transfer?: StateTransfer;
}
