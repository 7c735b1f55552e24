// Stage 3 parameter fetching (DeepSpeed's PartitionedParameterCoordinator): gathers a unit's
// parameters into a temporary full buffer and points the parameters at it, releases them after use
// (parameters become empty placeholders again), and prefetches the units the trace says come next.
//
// The trace is the order of fetches during one forward + backward. The first pass records it; later
// passes follow it, launching all-gathers for upcoming units (up to stage3_prefetch_bucket_size
// elements at a time and stage3_max_live_parameters gathered in all) so they overlap compute, and
// keeping a unit gathered when the trace shows it is needed again within stage3_max_reuse_distance
// elements. A pass that departs from the trace invalidates it and the next one records again. Which
// units are gathered, and in which order, depends only on the trace and sizes, never on timing, so
// every rank issues the same collectives in the same order. How far the prefetch runs ahead may
// depend on timing (it stops at a unit whose block a deferred optimizer step has not updated yet,
// `ready`), but it always launches a prefix of the trace, so the order stays the same.
//
// With offload_param a unit's own block is not on the device: launching the unit starts reading it
// from the tier straight into the gathered buffer ('swapping'), and its all-gather is issued at the
// next call this coordinator gets from a hook or a caller (pump), waiting for the read there if it
// is not done. Gathers are issued in launch order at those points, so their order is the same on
// every rank whatever the disk's timing; at most `readAhead` units are being read at once.
import { allocateFlat, flatArray, flatView, releaseFlat, type FlatBuffer, type OffloadWork, type ProcessGroup, type Work } from '@ds/core';
import type { FArray, KernelTable, Runtime, Tensor } from '@ds/tensor';

import type { ZeroConfig } from './config.js';
import type { PartitionPlan } from '@ds/core';
import { waitSync } from '@ds/core';

type Status = 'released' | 'swapping' | 'inflight' | 'available';

interface UnitSlot {
  status: Status;
  full: FlatBuffer | null;
  /** The all-gather filling `full` while the unit is in flight. */
  work: Work | null;
  /** The read of the own block from the offload tier while the unit is swapping. */
  swap: OffloadWork | null;
}

export interface FetchContext {
  runtime: Runtime;
  kernels: KernelTable;
  params: readonly Tensor[];
  shapes: readonly (readonly number[])[];
  paramDtype: 'bf16' | 'f16' | 'f32';
  group: ProcessGroup | null;
  plan: PartitionPlan;
  /** The device the gathered buffers live on. */
  device: string;
  /**
   * Puts this rank's block of unit u into `own` (the gathered buffer's part for this rank): a copy
   * from the resident shard (null), or a read from the offload tier to wait for.
   */
  fillOwn(u: number, own: FArray): OffloadWork | null;
  /** Most units whose own block is being read at once (offload_param.buffer_count; Infinity when resident). */
  readAhead: number;
  /**
   * Whether unit u's own block is final, so that launching it does no other work first (a deferred
   * optimizer step may still have to update it); the prefetch stops at a unit that is not.
   */
  ready(u: number): boolean;
  placeholder: Tensor;
  zc: ZeroConfig;
  log: (message: string) => void;
}

export class ParamCoordinator {
  private readonly slots: UnitSlot[];
  private mode: 'invalid' | 'record' | 'complete' = 'invalid';
  private trace: number[] = [];
  private cursor = 0;
  /** Elements currently gathered or being gathered (persistent unit excluded). */
  private live = 0;
  /** Units whose own block is being read, in launch order: their gathers are issued by pump(). */
  private swapping: number[] = [];

  constructor(
    private readonly c: FetchContext,
    private readonly persistentUnit: number,
  ) {
    this.slots = c.plan.units.map(() => ({ status: 'released', full: null, work: null, swap: null }));
  }

  isAvailable(u: number): boolean {
    return this.slots[u]!.status === 'available';
  }

  /** A new forward begins (the root module's pre-hook). */
  newPass(): void {
    if (this.mode === 'invalid') {
      this.mode = 'record';
      this.trace = [];
    } else if (this.mode === 'record') this.mode = this.trace.length > 0 ? 'complete' : 'record';
    this.cursor = 0;
  }

  /** Starts gathering unit u (no-op when it is gathered or on its way). */
  launch(u: number): void {
    const slot = this.slots[u]!;
    if (slot.status !== 'released') return;
    const { runtime, paramDtype, plan } = this.c;
    const unit = plan.units[u]!;
    const full = allocateFlat(runtime, paramDtype, unit.padded, 'parameters', `zero-3 gathered unit ${u}`, undefined, this.c.device);
    slot.full = full;
    if (u !== this.persistentUnit) this.live += unit.padded;
    slot.swap = this.c.fillOwn(u, flatArray(full, plan.rank * unit.block, unit.block));
    slot.status = 'swapping';
    this.swapping.push(u);
    if (!slot.swap) this.pump();
  }

  /** Issues the gathers of the units whose own block was being read, in launch order (waiting for each read). */
  private pump(): void {
    const { paramDtype, group, plan } = this.c;
    for (const u of this.swapping) {
      const slot = this.slots[u]!;
      slot.swap?.waitSync();
      slot.swap = null;
      if (!group) {
        this.materialize(u);
        continue;
      }
      const unit = plan.units[u]!;
      slot.work = group.allGather({ dtype: paramDtype, array: flatArray(slot.full!) }, { dtype: paramDtype, array: flatArray(slot.full!, plan.rank * unit.block, unit.block) });
      slot.status = 'inflight';
    }
    this.swapping = [];
  }

  private materialize(u: number): void {
    const slot = this.slots[u]!;
    const unit = this.c.plan.units[u]!;
    unit.params.forEach((i, k) => {
      const view = flatView(this.c.runtime, slot.full!, unit.offsets[k]!, this.c.shapes[i]!);
      this.c.params[i]!.setData(view);
      view.dispose();
    });
    slot.work = null;
    slot.status = 'available';
  }

  /** Makes unit u usable now, from a hook (blocks until its gather is done). */
  fetch(u: number): void {
    this.follow(u);
    this.launch(u);
    this.pump();
    const slot = this.slots[u]!;
    if (slot.status === 'inflight') {
      this.block(u);
      this.materialize(u);
    }
    if (this.mode === 'complete') this.prefetch();
  }

  /** The same from async code (checkpoints, gatheredParameters): awaits instead of blocking. */
  async fetchAsync(u: number): Promise<void> {
    this.launch(u);
    this.pump();
    const slot = this.slots[u]!;
    if (slot.status === 'inflight') {
      await slot.work!.wait();
      this.materialize(u);
    }
  }

  /** Waits, from a hook, for the all-gather of in-flight unit u. */
  private block(u: number): void {
    waitSync(this.slots[u]!.work!, this.c.group!, `the parameter all-gather of unit ${u}`);
  }

  private follow(u: number): void {
    if (this.mode === 'record') this.trace.push(u);
    else if (this.mode === 'complete') {
      if (this.trace[this.cursor] === u) this.cursor += 1;
      else {
        if (this.c.zc.log_trace_cache_warnings) this.c.log(`ZeRO-3: fetch of unit ${u} does not follow the recorded trace (expected ${this.trace[this.cursor] ?? 'end'}); recording it again`);
        this.mode = 'invalid';
      }
    }
  }

  private prefetch(): void {
    const { zc, plan } = this.c;
    let budget = Math.min(zc.stage3_prefetch_bucket_size, zc.stage3_max_live_parameters - this.live);
    for (let j = this.cursor; j < this.trace.length && budget > 0; j++) {
      const v = this.trace[j]!;
      if (this.slots[v]!.status !== 'released') continue;
      const n = plan.units[v]!.padded;
      if (n > budget || this.swapping.length >= this.c.readAhead || !this.c.ready(v)) break;
      this.launch(v);
      budget -= n;
    }
  }

  /** After a module's forward or backward: frees unit u unless the trace says it is reused soon. */
  release(u: number): void {
    this.pump();
    if (u === this.persistentUnit) return;
    if (this.mode === 'complete' && this.reusedSoon(u)) return;
    this.drop(u);
  }

  private reusedSoon(u: number): boolean {
    let distance = 0;
    for (let j = this.cursor; j < this.trace.length; j++) {
      const v = this.trace[j]!;
      if (v === u) return true;
      distance += this.c.plan.units[v]!.padded;
      if (distance > this.c.zc.stage3_max_reuse_distance) return false;
    }
    return false;
  }

  /** Frees a unit now (waiting for its gather first if it is in flight). */
  drop(u: number): void {
    const slot = this.slots[u]!;
    if (slot.status === 'released') return;
    if (slot.status === 'swapping') this.pump();
    if (slot.status === 'inflight') this.block(u);
    for (const i of this.c.plan.units[u]!.params) this.c.params[i]!.setData(this.c.placeholder);
    releaseFlat(slot.full!);
    slot.full = null;
    slot.work = null;
    slot.status = 'released';
    if (u !== this.persistentUnit) this.live -= this.c.plan.units[u]!.padded;
  }

  /** End of a pass: nothing but the persistent unit stays gathered. */
  async releaseAll(): Promise<void> {
    for (let u = 0; u < this.slots.length; u++) {
      if (u === this.persistentUnit) continue;
      const slot = this.slots[u]!;
      if (slot.status === 'swapping') this.pump();
      if (slot.status === 'inflight') await slot.work!.wait();
      this.drop(u);
    }
  }

  /** Re-gathers a unit whose shard changed (the persistent unit after a step). */
  async refresh(u: number): Promise<void> {
    this.drop(u);
    await this.fetchAsync(u);
  }

  destroy(): void {
    for (let u = 0; u < this.slots.length; u++) {
      const slot = this.slots[u]!;
      slot.swap?.waitSync(); // the tier must not write into a freed buffer
      if (slot.full) releaseFlat(slot.full);
      slot.full = null;
    }
  }
}
