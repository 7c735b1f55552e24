// Shared bookkeeping of every optimizer: per-slot state created on first use, and its state dict.
import { bf16ToF32, DSShapeError, f16ToF32, type KernelTable } from '@ds/tensor';

import { DSConfigError } from '../errors.js';
import type { Optimizer, OptimizerContext, OptimizerSlot, OptimizerStateDict, ParamGroup, SlotState, StepOptions } from './types.js';

export abstract class SlotOptimizer implements Optimizer {
  abstract readonly type: string;
  abstract readonly elementwise: boolean;
  abstract readonly stateNames: readonly string[];
  readonly paramGroups: ParamGroup[];
  protected slots: SlotState[] = [];

  constructor(
    protected readonly ctx: OptimizerContext,
    paramGroups: ParamGroup[],
  ) {
    if (paramGroups.length === 0) throw new DSConfigError('optimizer: at least one parameter group is needed');
    this.paramGroups = paramGroups;
  }

  /** State of slot i, created (zeroed) on first use; a slot that changed length is an engine bug. */
  protected state(i: number, length: number): SlotState {
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

  private alloc(n: number, name: string): Float32Array {
    return this.ctx.allocState ? this.ctx.allocState(n, name) : new Float32Array(n);
  }

  protected group(slot: OptimizerSlot): ParamGroup {
    const g = this.paramGroups[slot.group];
    if (!g) throw new DSShapeError(`${this.type}: slot refers to parameter group ${slot.group}, but there are ${this.paramGroups.length}; give each slot a group index below that`);
    return g;
  }

  abstract step(slots: readonly OptimizerSlot[], options: StepOptions): void;

  adoptState(index: number, tensors: Readonly<Record<string, Float32Array>>): void {
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
      slots: this.slots.map((s) => ({ step: s.step, tensors: Object.fromEntries(Object.entries(s.tensors).map(([k, v]) => [k, v.slice()])) })),
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
          a.set(v);
          return [k, a];
        }),
      ),
    }));
  }
}

/** Reads element i of a gradient as a number, whatever its dtype. Used by the TypeScript optimizers. */
export function gradReader(slot: OptimizerSlot): (i: number) => number {
  const g = slot.grad;
  if (slot.gradDtype === 'f32') return (i) => (g as Float32Array)[i]!;
  return slot.gradDtype === 'bf16' ? (i) => bf16ToF32(g[i]!) : (i) => f16ToF32(g[i]!);
}

/** Writes the slot's 16-bit copy of the master weights, when it asks for one. */
export function writeOut16(kernels: KernelTable, slot: OptimizerSlot): void {
  if (slot.out16) kernels.cast('f32', slot.master, slot.out16Dtype ?? 'bf16', slot.out16, slot.master.length);
}
