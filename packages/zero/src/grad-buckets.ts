// Gradient buckets of stages 2 and 3: a parameter's gradient, once final, is copied into its unit's
// bucket buffer and dropped; a complete bucket is reduce-scattered (asynchronously when overlap_comm)
// while backward goes on; when the reduction is done, this rank's block is added into the gradient
// shard and the buffer goes back to the pool. At most two buckets are in flight: a third waits for
// the oldest (DeepSpeed bounds outstanding reductions the same way).
import { allocateFlat, flatArray, releaseFlat, type FlatBuffer, type ProcessGroup, type Work } from '@ds/core';
import type { FloatDType, KernelTable, Runtime, Tensor } from '@ds/tensor';

import type { PartitionPlan } from './partition.js';
import { reduceUnit } from './reduce.js';
import { waitSync } from './sync-wait.js';

interface InFlight {
  unit: number;
  /** The reduction in flight; null without a group (settled at once). */
  work: Work | null;
  finish: () => void;
  buffer: FlatBuffer;
}

export interface BucketContext {
  runtime: Runtime;
  kernels: KernelTable;
  group: ProcessGroup | null;
  plan: PartitionPlan;
  gradDtype: FloatDType;
  config: Readonly<Record<string, unknown>>;
  reduceScatter: boolean;
  overlap: boolean;
  /** This rank's gradient block of unit u, where reduced blocks accumulate. */
  gradBlock: (u: number) => Float32Array | Uint16Array;
}

const MAX_IN_FLIGHT = 2;

export class GradientBuckets {
  private readonly pool: FlatBuffer[] = [];
  private readonly filling = new Map<number, FlatBuffer>();
  private inflight: InFlight[] = [];
  private readonly pending: number[];
  private readonly launched: boolean[];
  private readonly bucketNumel: number;
  /** Parameters whose gradient arrived in the current pass. */
  readonly fired: boolean[];

  constructor(private readonly c: BucketContext, paramCount: number) {
    this.pending = c.plan.units.map(() => 0);
    this.launched = c.plan.units.map(() => false);
    this.bucketNumel = Math.max(...c.plan.units.map((u) => u.padded));
    this.fired = new Array<boolean>(paramCount).fill(false);
  }

  /** Before a backward pass. */
  begin(): void {
    this.c.plan.units.forEach((u, ui) => {
      this.pending[ui] = u.params.length;
      this.launched[ui] = false;
    });
    this.fired.fill(false);
  }

  /** Parameter i's gradient is final: copy it into its bucket, drop it, launch a complete bucket. */
  onGradReady(i: number, p: Tensor): void {
    const { plan, kernels, gradDtype } = this.c;
    const ui = plan.unitOf[i]!;
    const unit = plan.units[ui]!;
    this.fired[i] = true;
    const g = p.grad;
    if (g) {
      const buf = this.bucketFor(ui);
      const offset = plan.flatOffset[i]! - unit.flatStart;
      kernels.cast(g.dtype as 'f32', g.data(), gradDtype, flatArray(buf, offset, p.numel), p.numel);
      g.dispose();
      p.grad = null;
    }
    this.pending[ui]! -= 1;
    if (this.pending[ui] === 0 && this.c.overlap) this.launch(ui);
  }

  private bucketFor(ui: number): FlatBuffer {
    let buf = this.filling.get(ui);
    if (buf) return buf;
    buf = this.pool.pop() ?? this.reclaim() ?? allocateFlat(this.c.runtime, this.c.gradDtype, this.bucketNumel, 'communication', 'zero gradient bucket');
    this.c.kernels.fill(this.c.gradDtype, flatArray(buf), this.c.plan.units[ui]!.padded, 0);
    this.filling.set(ui, buf);
    return buf;
  }

  /** A bucket whose reduction finished; waits for the oldest when too many are in flight. */
  private reclaim(): FlatBuffer | null {
    const pick = this.inflight.find((f) => f.work?.isCompleted()) ?? (this.inflight.length >= MAX_IN_FLIGHT ? this.inflight[0] : undefined);
    if (!pick) return null;
    if (pick.work) waitSync(pick.work, this.c.group!, `the gradient reduction of unit ${pick.unit}`);
    this.settle(pick);
    return this.pool.pop() ?? null;
  }

  private settle(f: InFlight): void {
    f.finish();
    const unit = this.c.plan.units[f.unit]!;
    const own = flatArray(f.buffer, this.c.plan.rank * unit.block, unit.block);
    this.c.kernels.axpy(this.c.gradDtype, own, this.c.gradDtype, this.c.gradBlock(f.unit), unit.block, 1);
    this.pool.push(f.buffer);
    this.inflight = this.inflight.filter((x) => x !== f);
  }

  private launch(ui: number): void {
    if (this.launched[ui]) return;
    this.launched[ui] = true;
    const unit = this.c.plan.units[ui]!;
    const buffer = this.bucketFor(ui);
    this.filling.delete(ui);
    const group = this.c.group;
    if (!group) {
      this.inflight.push({ unit: ui, work: null, finish: () => {}, buffer });
      this.settle(this.inflight[this.inflight.length - 1]!);
      return;
    }
    const r = reduceUnit(group, this.c.kernels, this.c.gradDtype, flatArray(buffer, 0, unit.padded), unit, this.c.config, this.c.reduceScatter);
    this.inflight.push({ unit: ui, work: r.work, finish: r.finish, buffer });
  }

  /** After backward: reduce what is left (in unit order on every rank), wait, fold everything in. */
  async finish(): Promise<void> {
    this.c.plan.units.forEach((_, ui) => this.launch(ui));
    const works = [...this.inflight];
    await Promise.all(works.map((f) => f.work?.wait()));
    for (const f of works) this.settle(f);
    while (this.pool.length > MAX_IN_FLIGHT) releaseFlat(this.pool.pop()!);
  }

  destroy(): void {
    for (const b of [...this.pool, ...this.filling.values(), ...this.inflight.map((f) => f.buffer)]) releaseFlat(b);
    this.pool.length = 0;
    this.filling.clear();
    this.inflight = [];
  }
}
