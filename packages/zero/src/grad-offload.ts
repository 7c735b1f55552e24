// This rank's reduced gradient shard (stages 2 and 3) and where it lives between backward and step.
// Without offload it is a flat buffer on the device. With offload_optimizer it goes to the tier, as
// in DeepSpeed (stage_1_and_2.py copies each rank's reduced gradient partition into a host buffer
// for the CPU optimizer; stage3.py with nvme swaps the partitions out per sub-group and back in for
// the step):
//
// The shard goes to the optimizer offload's own tier (one tier, one swap file per rank):
// - a tier that lends its memory (cpu, OffloadTier.residentStorage): the shard is a region of its host
//   memory (counted 'offload' on 'host', outside DS_MEMORY_LIMIT) and core's gradient reduction adds
//   the reduced blocks straight into it. On the cpu device the "device" and the host are the same
//   RAM, so no copy is made: the split is the tracker's accounting, the one DeepSpeed users know.
// - any other (nvme): each unit's block has a region in the tier. During backward the reduction adds
//   a unit's reduced block into a unit-sized swap buffer (zeros on the first micro step of an
//   accumulation window, the unit's accumulated block read back on the others) and the block is
//   written out as soon as it settled (ReducerSpec.gradSettled); the step reads each sub-group's
//   pieces back into its staging set with the masters and moments (offload-state.ts). The swap
//   buffers are staging memory, counted 'offload' on the device like the optimizer's staging sets;
//   nothing of the shard stays between steps. The global norm is folded in as in DeepSpeed: each
//   unit's norm terms are taken from its swap buffer as the block settles in the boundary backward
//   (foldNorm), so the step does not read the shard twice; a unit without terms (a step after a
//   backward that was not the boundary) is read back (block(), reading ahead).
import { allocateFlat, bytesOf, DSError, flatArray, releaseFlat, type FlatBuffer, type OffloadRegion, type OffloadTier, type OffloadWork, type PartitionPlan, type StateManagerArgs } from '@ds/core';
import { BYTES_PER_ELEMENT, hostOnly, type FArray, type FloatDType } from '@ds/tensor';

import type { OptimizerStateOffload } from './offload-state.js';

/** Where a stage keeps its gradient shard: the reduction's target, the blocks for the norm and the step, zeroing and accounting. */
export interface GradientHome {
  /** Where core's reduction adds unit u's reduced block during backward (ReducerSpec.gradBlock). */
  target(u: number): FArray;
  /** After the reduction added into target(u) (ReducerSpec.gradSettled). */
  settled(u: number): void;
  /** Unit u's accumulated block after backward (a tier's: read back, valid until the next call). */
  block(u: number): FArray;
  /** The shard when it is swapped to a tier (nvme), for the optimizer offload's step to read from; else null. */
  readonly swapped: SwappedGradients | null;
  /** Zeroes the shard (after the step). */
  zero(): void;
  /** Bytes counted on the device as 'gradients'. */
  readonly deviceBytes: number;
  /** Frees the shard (a swapped one once its transfers landed, in the background; a failure is passed to `onError`). */
  release(onError: (err: unknown) => void): void;
}

/**
 * The gradient shard of `plan` in `dtype`, in the optimizer offload's tier when there is one (`offload`,
 * from offload_optimizer): in place in its memory where the tier lends it (cpu), else swapped per unit
 * through it (nvme), read back by the offload's step. Without offload: on the device.
 */
export function gradientHome(args: StateManagerArgs, dtype: FloatDType, plan: PartitionPlan, label: string, offload: OptimizerStateOffload | null, pieceOf: (slot: number) => readonly [number, number]): GradientHome {
  const rank = args.group?.rank ?? 0;
  if (!offload) return new ResidentGradients(args, allocateFlat(args.runtime, dtype, plan.shardNumel, 'gradients', label, undefined, args.io.device), plan, null);
  const lent = offload.lend(plan.shardNumel * BYTES_PER_ELEMENT[dtype], `rank ${rank} ${label}`);
  if (lent) {
    args.ctx.log('info', `ZeRO: ${label} (${lent.bytes} B) kept in the ${offload.tierName} offload tier's host memory`);
    return new ResidentGradients(args, { storage: lent.storage, dtype, numel: plan.shardNumel }, plan, lent.free);
  }
  const swapped = new SwappedGradients(args, dtype, plan, `rank ${rank} ${label}`);
  offload.swapGradients(swapped, pieceOf);
  return swapped;
}

/** A flat shard the reduction adds into directly: on the device, or in the cpu tier's host memory. */
class ResidentGradients implements GradientHome {
  readonly swapped = null;

  constructor(
    private readonly args: StateManagerArgs,
    private readonly flat: FlatBuffer,
    private readonly plan: PartitionPlan,
    /** Gives the lent memory back to the tier; null: the shard is the device's own. */
    private readonly giveBack: (() => void) | null,
  ) {}

  target(u: number): FArray {
    return this.block(u);
  }

  settled(): void {}

  block(u: number): FArray {
    const unit = this.plan.units[u]!;
    return flatArray(this.flat, unit.shardStart, unit.block);
  }

  zero(): void {
    this.args.kernels.fill(this.flat.dtype as FloatDType, flatArray(this.flat), this.flat.numel, 0);
  }

  get deviceBytes(): number {
    return this.giveBack ? 0 : this.flat.storage.byteLength;
  }

  release(): void {
    if (this.giveBack) this.giveBack();
    else releaseFlat(this.flat);
  }
}

/**
 * Unit-sized swap buffers kept: the reduction's write-outs in flight, and the norm's read-ahead (up to
 * SWAP_BUFFERS - 1 units past the one in use); with all busy, the oldest transfer is waited for.
 */
const SWAP_BUFFERS = 6;

/**
 * Each unit's block in a region of the nvme tier, moved through unit-sized swap buffers. The tier is
 * the optimizer offload's (one swap file per rank for both), attached once that exists (attach()).
 */
export class SwappedGradients implements GradientHome {
  private tier: OffloadTier | null = null;
  private regions: OffloadRegion[] = [];
  /** Zeros returned by block() for a unit that holds nothing (before attach() too). */
  private zeros: FlatBuffer | null = null;
  /** Units whose block holds nothing since the last zero(): read as zeros, not from the tier. */
  private readonly fresh: boolean[];
  /** Per unit: the write of its block in flight. */
  private readonly writing: (OffloadWork | null)[];
  private readonly buffers: SwapBuffer[] = [];
  /** The buffer holding the unit the reduction is adding into, by unit. */
  private readonly filling = new Map<number, SwapBuffer>();
  private readonly bytesPer: number;
  private readonly most: number;
  /** The unit whose block the last block() call handed out (-1: none). */
  private handedOut = -1;
  /** zero() was called: every unit is fresh from the next target() on. */
  private zeroPending = false;
  /** The backward under way is the accumulation boundary's: blocks that settle in it are final. */
  private boundary = false;
  /** Takes a final block's norm terms (foldNorm), or null: the norm reads the blocks. */
  private normOf: ((u: number, block: FArray) => readonly [number, number]) | null = null;
  /** Per unit: the norm terms of its final block, or null when not taken. */
  private readonly terms: (readonly [number, number] | null)[];

  constructor(
    private readonly args: StateManagerArgs,
    readonly dtype: FloatDType,
    private readonly plan: PartitionPlan,
    private readonly label: string,
  ) {
    this.bytesPer = BYTES_PER_ELEMENT[dtype];
    this.fresh = plan.units.map(() => true);
    this.writing = plan.units.map(() => null);
    this.terms = plan.units.map(() => null);
    this.most = Math.max(1, ...plan.units.map((u) => u.block));
  }

  get swapped(): SwappedGradients {
    return this;
  }

  /** Places every unit's block in `tier` (the optimizer offload's, which closes it). */
  attach(tier: OffloadTier): void {
    this.tier = tier;
    this.regions = this.plan.units.map((u, i) => tier.allocate(u.block * this.bytesPer, `${this.label} unit ${i}`));
    this.args.ctx.log('info', `ZeRO: ${this.label} swapped per unit to ${tier.describe()}`);
  }

  private io(): OffloadTier {
    if (!this.tier) throw new DSError(`ZeRO: the ${this.label} has no offload tier attached yet`, { code: 'DS_ZERO_INTERNAL' });
    return this.tier;
  }

  private host(flat: FlatBuffer, n: number): Uint8Array {
    return bytesOf(hostOnly('gradient swap buffer', flat.storage.label, flatArray(flat, 0, n)) as Float32Array | Uint16Array);
  }

  /**
   * A swap buffer holding no unit whose transfer has landed: an idle one, a new one while fewer than
   * SWAP_BUFFERS exist, else (with `wait`) the oldest one's transfer waited for; null without `wait`
   * when none is ready.
   */
  private freeBuffer(wait = true): SwapBuffer | null {
    let open = this.buffers.filter((b) => b.holds < 0);
    if (open.length === 0 && this.buffers.length >= SWAP_BUFFERS) {
      if (!wait) return null;
      this.dropHeld();
      open = this.buffers;
    }
    const idle = open.find((b) => !b.busy || b.busy.isCompleted()) ?? (this.buffers.length < SWAP_BUFFERS || !wait ? null : open[0]!);
    if (idle) {
      idle.busy?.waitSync();
      idle.busy = null;
      // Round robin: the buffer just taken goes last, so the oldest transfer is the one waited for next.
      this.buffers.splice(this.buffers.indexOf(idle), 1);
      this.buffers.push(idle);
      return idle;
    }
    if (this.buffers.length >= SWAP_BUFFERS) return null;
    const bytes = this.most * this.bytesPer;
    const made: SwapBuffer = { flat: allocateFlat(this.args.runtime, this.dtype, this.most, 'offload', `gradient swap buffer ${this.buffers.length}`, this.io().stagingBuffer?.(bytes)), busy: null, holds: -1 };
    this.buffers.push(made);
    return made;
  }

  /** Forgets the blocks read ahead for block() (their reads waited for): the reduction is about to change blocks. */
  private dropHeld(): void {
    for (const b of this.buffers) {
      if (b.holds < 0) continue;
      b.busy?.waitSync();
      b.busy = null;
      b.holds = -1;
    }
  }

  /** Starts reading unit u's block into a swap buffer (blocking only for a write of u in flight). */
  private readInto(buf: SwapBuffer, u: number): void {
    this.landed(u);
    buf.busy = this.io().swapIn(this.regions[u]!, 0, this.host(buf.flat, this.plan.units[u]!.block));
    buf.holds = u;
  }

  /** Blocking: waits for unit u's write in flight (a read must not overtake it). */
  private landed(u: number): void {
    this.writing[u]?.waitSync();
    this.writing[u] = null;
  }

  target(u: number): FArray {
    if (this.zeroPending) {
      this.fresh.fill(true);
      this.zeroPending = false;
    }
    let buf = this.filling.get(u);
    if (!buf) {
      this.dropHeld();
      buf = this.freeBuffer()!;
      const n = this.plan.units[u]!.block;
      if (this.fresh[u]) this.args.kernels.fill(this.dtype, flatArray(buf.flat, 0, n), n, 0);
      else {
        this.landed(u);
        this.io().swapIn(this.regions[u]!, 0, this.host(buf.flat, n)).waitSync();
      }
      this.filling.set(u, buf);
    }
    return flatArray(buf.flat, 0, this.plan.units[u]!.block);
  }

  /** Norm terms are taken from each block as it settles in a boundary backward, by `fn`. */
  foldNorm(fn: (u: number, block: FArray) => readonly [number, number]): void {
    this.normOf = fn;
  }

  /** A backward begins; `boundary`: its blocks are the ones the step uses. */
  beginBackward(boundary: boolean): void {
    this.boundary = boundary;
    this.terms.fill(null);
  }

  /** Unit u's norm terms taken as it settled in the boundary backward ([0, 0] for a unit holding nothing), or null. */
  normTerms(u: number): readonly [number, number] | null {
    if (this.fresh[u]) return [0, 0];
    return this.terms[u]!;
  }

  settled(u: number): void {
    const buf = this.filling.get(u);
    if (!buf) return;
    this.filling.delete(u);
    this.landed(u);
    const n = this.plan.units[u]!.block;
    if (this.boundary && this.normOf) this.terms[u] = this.normOf(u, flatArray(buf.flat, 0, n));
    const w = this.io().swapOut(this.regions[u]!, 0, this.host(buf.flat, n));
    buf.busy = w;
    this.writing[u] = w;
    this.fresh[u] = false;
  }

  /**
   * Unit u's block, read back (zeros when it holds nothing); valid until the next call. The norm reads
   * the units in order: while the caller works on u, the next units are read ahead into free buffers.
   */
  block(u: number): FArray {
    const n = this.plan.units[u]!.block;
    // The block handed out by the previous call is the caller's no more.
    for (const b of this.buffers) if (b.holds === this.handedOut) b.holds = -1;
    this.handedOut = -1;
    if (this.fresh[u]) {
      this.zeros ??= allocateFlat(this.args.runtime, this.dtype, this.most, 'offload', 'gradient zeros');
      return flatArray(this.zeros, 0, n);
    }
    let buf = this.buffers.find((b) => b.holds === u);
    if (!buf) {
      buf = this.freeBuffer()!;
      this.readInto(buf, u);
    }
    for (let v = u + 1; v < this.plan.units.length && v <= u + SWAP_BUFFERS - 1; v++) {
      if (this.fresh[v] || this.buffers.some((b) => b.holds === v) || (this.writing[v] && !this.writing[v]!.isCompleted())) continue;
      const ahead = this.freeBuffer(false);
      if (!ahead) break;
      this.readInto(ahead, v);
    }
    buf.busy?.waitSync();
    buf.busy = null;
    this.handedOut = u;
    return flatArray(buf.flat, 0, n);
  }

  /** Starts reading elements [at, at + dst's length) of unit u's block into `dst` (zeros when the unit holds nothing). */
  readPiece(u: number, at: number, dst: Uint8Array): OffloadWork | null {
    if (this.fresh[u]) {
      dst.fill(0);
      return null;
    }
    this.landed(u);
    return this.io().swapIn(this.regions[u]!, at * this.bytesPer, dst);
  }

  /**
   * Zeroes the shard as the next backward begins: until then the blocks keep what the step read (a
   * deferred optimizer step reads the rest of its sub-groups' gradients under the next forward).
   */
  zero(): void {
    this.dropHeld();
    this.handedOut = -1;
    this.zeroPending = true;
  }

  get deviceBytes(): number {
    return 0;
  }

  /** Frees the buffers once their writes landed and the regions (the tier itself is the optimizer offload's to close). */
  release(onError: (err: unknown) => void): void {
    const pending = [...this.buffers.map((b) => b.busy), ...this.writing].filter((w): w is OffloadWork => w !== null);
    const done = async () => {
      const errors: unknown[] = [];
      for (const w of pending) await w.wait().catch((e: unknown) => errors.push(e));
      for (const b of this.buffers) releaseFlat(b.flat);
      if (this.zeros) releaseFlat(this.zeros);
      for (const r of this.regions) this.tier!.free(r);
      if (errors.length > 0) throw errors[0];
    };
    done().catch(onError);
  }
}

interface SwapBuffer {
  flat: FlatBuffer;
  /** The transfer using it (a write out of it, a read into it), until it lands. */
  busy: OffloadWork | null;
  /** The unit whose block it holds for block() (read ahead, or handed out), or -1. */
  holds: number;
}
