// Shared bookkeeping of every optimizer: per-slot state created on first use, scratch arrays kept
// across steps, the state dict (the only place state crosses to the host), and the two slot
// operations every update needs (the scaled f32 gradient, the 16-bit copy of the weights).
import { DeviceArray, DSDeviceError, DSShapeError, type F32, type KernelTable } from '@ds/tensor';

import { DSConfigError } from '../errors.js';
import type { Optimizer, OptimizerContext, OptimizerSlot, OptimizerStateDict, ParamGroup, SlotState, StepOptions } from './types.js';

/** The state an optimizer steps with: arrays on the slots' device (a state dict holds host copies). */
export interface LiveSlotState {
  step: number;
  tensors: Record<string, F32>;
}

export abstract class SlotOptimizer implements Optimizer {
  abstract readonly type: string;
  abstract readonly elementwise: boolean;
  abstract readonly stateNames: readonly string[];
  readonly paramGroups: ParamGroup[];
  protected slots: LiveSlotState[] = [];
  /** Scratch arrays by name, each as long as the longest slot seen so far. */
  private readonly keptScratch = new Map<string, F32>();

  constructor(
    protected readonly ctx: OptimizerContext,
    paramGroups: ParamGroup[],
  ) {
    if (paramGroups.length === 0) throw new DSConfigError('optimizer: at least one parameter group is needed');
    this.paramGroups = paramGroups;
  }

  /** State of slot i, created (zeroed) on first use; a slot that changed length is an engine bug. */
  protected state(i: number, length: number): LiveSlotState {
    let s = this.slots[i];
    if (!s) {
      s = { step: 0, tensors: {} };
      for (const name of this.stateNames) s.tensors[name] = this.alloc(length, name);
      this.slots[i] = s;
    }
    for (const name of this.stateNames) {
      if (s.tensors[name]!.length !== length) {
        throw new DSShapeError(`${this.type}: slot ${i} has ${length} parameters but its state '${name}' has ${s.tensors[name]!.length}; pass the same slots on every step`);
      }
    }
    return s;
  }

  private alloc(n: number, name: string): F32 {
    return this.ctx.allocState ? this.ctx.allocState(n, name) : new Float32Array(n);
  }

  /**
   * One f32 scratch array per name, each at least as long as the longest of `slots`; take a slot's
   * window with `.subarray(0, n)`. Arrays are allocated when a longer slot first shows up and kept,
   * so steady-state steps allocate nothing.
   */
  protected slotScratch<N extends string>(slots: readonly OptimizerSlot[], names: readonly N[]): Record<N, F32> {
    const longest = slots.reduce((m, s) => Math.max(m, s.master.length), 0);
    const out = {} as Record<N, F32>;
    for (const name of names) {
      let a = this.keptScratch.get(name);
      if (!a || a.length < longest) {
        const label = `${this.type} scratch ${name}`;
        a = this.ctx.allocScratch ? this.ctx.allocScratch(longest, label) : this.alloc(longest, label);
        this.keptScratch.set(name, a);
      }
      out[name] = a;
    }
    return out;
  }

  protected group(slot: OptimizerSlot): ParamGroup {
    const g = this.paramGroups[slot.group];
    if (!g) throw new DSShapeError(`${this.type}: slot refers to parameter group ${slot.group}, but there are ${this.paramGroups.length}; give each slot a group index below that`);
    return g;
  }

  abstract step(slots: readonly OptimizerSlot[], options: StepOptions): void;

  adoptState(index: number, tensors: Readonly<Record<string, F32>>): void {
    const length = tensors[this.stateNames[0] ?? '']?.length ?? 0;
    for (const name of this.stateNames) {
      const t = tensors[name];
      if (!t || t.length !== length) {
        throw new DSConfigError(`${this.type}.adoptState: slot ${index} needs '${name}' of ${length} elements (state names: ${this.stateNames.join(', ')}), got ${t ? t.length : 'none'}`);
      }
    }
    this.slots[index] = { step: this.slots[index]?.step ?? 0, tensors: { ...tensors } };
  }

  stateDict(): OptimizerStateDict {
    return {
      type: this.type,
      paramGroups: this.paramGroups.map((g) => ({ ...g, ...(g.betas ? { betas: [...g.betas] as [number, number] } : {}) })),
      slots: this.slots.map(
        (s, i): SlotState => ({ step: s.step, tensors: Object.fromEntries(Object.entries(s.tensors).map(([k, v]) => [k, this.stateToHost(v, i, k)])) }),
      ),
    };
  }

  loadStateDict(state: OptimizerStateDict): void {
    if (state.type.toLowerCase() !== this.type.toLowerCase()) {
      throw new DSConfigError(`optimizer state was saved by ${state.type} but this optimizer is ${this.type}`);
    }
    if (state.paramGroups.length !== this.paramGroups.length) {
      throw new DSConfigError(`optimizer state has ${state.paramGroups.length} parameter groups, this optimizer has ${this.paramGroups.length}`);
    }
    state.paramGroups.forEach((g, i) => Object.assign(this.paramGroups[i]!, g));
    // Reuse this optimizer's arrays where the sizes match, so loading allocates nothing new.
    this.slots = state.slots.map((s, i) => ({
      step: s.step,
      tensors: Object.fromEntries(
        Object.entries(s.tensors).map(([k, v]) => {
          const existing = this.slots[i]?.tensors[k];
          const a = existing && existing.length === v.length ? existing : this.alloc(v.length, k);
          this.stateFromHost(v, a, i, k);
          return [k, a];
        }),
      ),
    }));
  }

  /** A host copy of state array `name` of slot i. */
  private stateToHost(a: F32, i: number, name: string): Float32Array {
    if (!(a instanceof DeviceArray)) return a.slice();
    return this.transferFor('stateDict', a, i, name).toHost(a);
  }

  private stateFromHost(src: Float32Array, dst: F32, i: number, name: string): void {
    if (dst instanceof DeviceArray) this.transferFor('loadStateDict', dst, i, name).fromHost(src, dst);
    else dst.set(src);
  }

  private transferFor(op: string, a: DeviceArray, i: number, name: string): NonNullable<OptimizerContext['transfer']> {
    if (this.ctx.transfer) return this.ctx.transfer;
    throw new DSDeviceError(
      `${this.type}.${op}: state '${name}' of slot ${i} lives on device '${a.device}', and the optimizer context has no transfer; ` +
        `pass OptimizerContext.transfer (toHost / fromHost over the device's copyToHost / copyFromHost)`,
    );
  }
}

/**
 * dst = gradScale * grad as f32 (dst of the slot's length): the one place a 16-bit gradient is
 * widened, for updates that need the gradient itself rather than a multiple of it added somewhere.
 */
export function scaledGrad(kernels: KernelTable, slot: OptimizerSlot, gradScale: number, dst: F32): void {
  const n = slot.master.length;
  if (slot.gradDtype === 'f32') {
    kernels.scale('f32', slot.grad, dst, n, gradScale, 0);
  } else {
    kernels.cast(slot.gradDtype, slot.grad, 'f32', dst, n);
    kernels.scale('f32', dst, dst, n, gradScale, 0);
  }
}

/** Writes the slot's 16-bit copy of the master weights, when it asks for one. */
export function writeOut16(kernels: KernelTable, slot: OptimizerSlot): void {
  if (slot.out16) kernels.cast('f32', slot.master, slot.out16Dtype ?? 'bf16', slot.out16, slot.master.length);
}
