// What the 1-bit optimizers share: the contract the plugin's gradient reducer and checkpoint
// wrapper read (whether the next backward's gradients stay local; the per-rank state a checkpoint
// must carry), the error-feedback buffers by slot, and DeepSpeed's `exp_avg_mask` parameter-group
// key (kept out of saved state and kept as the user set it on load, as DeepSpeed does).
import { SlotOptimizer, type OptimizerContext, type OptimizerSlot, type OptimizerStateDict, type ParamGroup } from '@ds/core';
import { DSShapeError, hostOnly } from '@ds/tensor';

import { createErrors, type CompressedAllReduce, type CompressionErrors } from './compressed-allreduce.js';

/**
 * A slot as the 1-bit optimizers' loops read it: host arrays. Their compression and update loops
 * run in JavaScript on the cpu device; a slot on another device (sim, cuda) fails by name here
 * (the plugin refuses such an engine before this, with the same advice).
 */
export interface HostSlot extends OptimizerSlot {
  master: Float32Array;
  grad: Float32Array | Uint16Array;
  out16?: Uint16Array;
}

export function hostSlot(type: string, slot: OptimizerSlot): HostSlot {
  const { out16, ...rest } = slot;
  return {
    ...rest,
    master: hostOnly(type, 'master weights', slot.master),
    grad: hostOnly(type, 'gradient', slot.grad),
    ...(out16 ? { out16: hostOnly(type, '16-bit weights', out16) } : {}),
  };
}

/** Error-feedback buffers by slot index. */
export type ErrorState = Map<number, CompressionErrors>;

/** A rank's own state beyond the optimizer's state dict (which stage 0 saves once, from rank 0). */
export interface RankExtras {
  /** Error buffers by slot: their sizes depend on the world size. */
  errors: ErrorState;
  /** Other per-rank arrays (0/1 Adam's momentum accumulator), by name. */
  arrays: Map<string, Float32Array>;
  /** Scalars (0/1 Adam's interval policy and its accumulated learning rate), saved as exact JSON numbers. */
  scalars: Record<string, number>;
}

/** What the plugin's gradient reducer and checkpoint wrapper need of a 1-bit optimizer. */
export interface CompressingOptimizer {
  /** True when the next backward's gradients stay local: the engine's all-reduce is off (DeepSpeed: enable_backward_allreduce = False). */
  readonly localGradients: boolean;
  rankExtras(): RankExtras;
  /** Restores a rank's extras; `errors` null (another world size wrote them) restarts them from zero. */
  loadRankExtras(extras: { errors: ErrorState | null; arrays: Map<string, Float32Array>; scalars: Record<string, number> }): void;
}

export abstract class CompressingSlotOptimizer extends SlotOptimizer implements CompressingOptimizer {
  abstract readonly localGradients: boolean;
  protected errors: ErrorState = new Map();

  constructor(
    ctx: OptimizerContext,
    groups: ParamGroup[],
    betas: [number, number],
    /** The compressed all-reduce over the data-parallel group; null (one rank) reduces nothing. */
    protected readonly comm: CompressedAllReduce | null,
  ) {
    super(ctx, groups.map((g) => ({ ...g, betas: g.betas ?? [betas[0], betas[1]] })));
  }

  /** Slot i's live state with host arrays (the same object: its step counter is the optimizer's). */
  protected hostState(i: number, length: number): { step: number; tensors: Record<string, Float32Array> } {
    const s = this.state(i, length);
    for (const [name, a] of Object.entries(s.tensors)) hostOnly(this.type, `state '${name}'`, a);
    return s as unknown as { step: number; tensors: Record<string, Float32Array> };
  }

  /** True when there is someone to communicate with. */
  protected get communicates(): boolean {
    return this.comm !== null && this.comm.group.size > 1;
  }

  /** Averages `x` (f32, in place) over the group with slot `index`'s error buffers. */
  protected compress(index: number, x: Float32Array): void {
    if (!this.communicates) return;
    let e = this.errors.get(index);
    if (!e) {
      e = createErrors(x.length, this.comm!.group.size);
      this.errors.set(index, e);
    }
    this.comm!.run({ dtype: 'f32', array: x }, e);
  }

  protected zeroErrors(): void {
    for (const e of this.errors.values()) {
      e.worker.fill(0);
      e.server.fill(0);
    }
  }

  /** Multiplies x by the group's exp_avg_mask, when it has one. */
  protected applyMask(group: ParamGroup, groupIndex: number, x: Float32Array): void {
    const mask = group.exp_avg_mask;
    if (mask === undefined) return;
    if (!(mask instanceof Float32Array) || mask.length !== x.length) {
      throw new DSShapeError(
        `${this.type}: parameter group ${groupIndex}'s exp_avg_mask must be a Float32Array of the slot's ${x.length} elements (got ${mask instanceof Float32Array ? mask.length : typeof mask})`,
      );
    }
    for (let j = 0; j < x.length; j++) x[j] = x[j]! * mask[j]!;
  }

  rankExtras(): RankExtras {
    return { errors: this.errors, arrays: this.extraArrays(), scalars: this.extraScalars() };
  }

  loadRankExtras(extras: { errors: ErrorState | null; arrays: Map<string, Float32Array>; scalars: Record<string, number> }): void {
    this.errors = new Map([...(extras.errors ?? [])].map(([i, e]) => [i, { worker: e.worker.slice(), server: e.server.slice() }]));
    this.loadExtras(extras.arrays, extras.scalars);
  }

  /** Per-rank arrays besides the errors (none by default). */
  protected extraArrays(): Map<string, Float32Array> {
    return new Map();
  }

  protected extraScalars(): Record<string, number> {
    return {};
  }

  protected loadExtras(_arrays: Map<string, Float32Array>, _scalars: Record<string, number>): void {}

  /** The mask is the user's, not state: it is not saved, and loading keeps the current one (DeepSpeed does the same). */
  override stateDict(): OptimizerStateDict {
    const state = super.stateDict();
    state.paramGroups = state.paramGroups.map(({ exp_avg_mask: _mask, ...rest }) => rest as ParamGroup);
    return state;
  }

  override loadStateDict(state: OptimizerStateDict): void {
    const masks = this.paramGroups.map((g) => g.exp_avg_mask);
    super.loadStateDict({ ...state, paramGroups: state.paramGroups.map(({ exp_avg_mask: _mask, ...rest }) => rest as ParamGroup) });
    masks.forEach((m, i) => {
      if (m !== undefined) this.paramGroups[i]!.exp_avg_mask = m;
    });
  }
}
