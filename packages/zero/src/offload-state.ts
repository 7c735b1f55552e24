// The optimizer side of ZeRO-Offload / ZeRO-Infinity (DeepSpeed's OptimizerSwapper and
// PipelinedOptimizerSwapper). The optimizer slots (one per run of a unit's block, at most
// sub_group_size elements) are packed, in order, into sub-groups of at most sub_group_size elements
// (DeepSpeed's sub-groups span parameters the same way); each sub-group has one region in the tier
// named by zero_optimization.offload_optimizer.device holding its fp32 master weights followed by its
// optimizer moments, so between steps none of them is on the device.
//
// The step streams the sub-groups through staging sets (one set holds a sub-group's master and
// moments, and, when the 16-bit parameters are offloaded too, its updated 16-bit weights on their way
// to the parameter tier): with `pipeline_read` the read of sub-group i+1 runs while i is stepped, with
// `pipeline_write` the write of i-1 completes while i is stepped; `buffer_count` is DeepSpeed's pool
// of sub-group-sized tensor buffers, of which a staging set takes one per tensor (3 for Adam).
// Beyond the step: the first sub-groups' masters and moments do not depend on the gradients, so
// prefetch() (called as the boundary backward begins) starts reading them into their sets while
// backward runs, and the last sub-groups' writes are left in flight when the step returns, to finish
// under the next forward; whatever reads the tier or reuses a set waits for them first.
//
// With an fp32 model the parameters are the masters (no separate copy exists): only the moments move.
// Staging sets are host memory (create() refuses a device engine), counted by the tracker as
// 'offload' on the engine's device: they are the only optimizer bytes that device keeps. Where the
// tier offers aligned staging memory (nvme: O_DIRECT), the sets use it, so transfers need no bounce copy.
import {
  allocateFlat,
  bytesOf,
  DSConfigError,
  flatArray,
  knownPluginByPackage,
  registerHint,
  releaseFlat,
  type FlatBuffer,
  type OffloadRegion,
  type OffloadTier,
  type OffloadWork,
  type Optimizer,
  type OptimizerSlot,
  type ParamGroup,
  type StateManagerArgs,
} from '@ds/core';

import { BYTES_PER_ELEMENT, hostOnly, type F32, type Storage, type U16 } from '@ds/tensor';
import type { ZeroConfig } from './config.js';
import type { SwappedGradients } from './grad-offload.js';

export interface OffloadSection {
  device: string;
  buffer_count: number;
  pipeline_read: boolean;
  pipeline_write: boolean;
  [key: string]: unknown;
}

/** The offload_optimizer section when it names a tier, else null. */
export function optimizerOffloadOf(zc: ZeroConfig): OffloadSection | null {
  const s = zc.offload_optimizer as OffloadSection | null | undefined;
  return s && s.device !== 'none' ? s : null;
}

/** Asks the registry for the tier `device` (offload_<kind>.device), naming the package that has one when none is registered. */
export async function tierFor(args: StateManagerArgs, kind: 'optimizer' | 'param', section: Record<string, unknown>, device = String(section.device)): Promise<OffloadTier> {
  const key = `zero_optimization.offload_${kind}.device`;
  if (args.io.device !== 'cpu') {
    // The tiers move host bytes and the optimizer would step device masters with host moments.
    throw new DSConfigError(`${key} '${section.device}' with a model on '${args.io.device}' is not supported yet: offload runs with the model on the cpu device; remove offload_${kind} or train on cpu`);
  }
  const claim = args.ctx.registry.get('offloadTiers', device);
  if (!claim) {
    const pkg = knownPluginByPackage('@ds/offload-nvme')!;
    throw new DSConfigError(`${key} '${device}' needs an offload tier of that name (registered: ${args.ctx.registry.names('offloadTiers').join(', ') || 'none'}): ${registerHint(pkg)}`);
  }
  const aio = args.config.aio as Record<string, unknown> | undefined;
  // A tier other than the section's own (the host part of an nvme parameter offload) gets only what applies to it.
  const own = device === section.device ? section : { device, pin_memory: section.pin_memory ?? false };
  return claim.value({ kind, section: own, ...(aio ? { aio } : {}) }, args.ctx);
}


/** A step in progress over the sub-groups. */
interface Pipeline {
  optimizer: Optimizer;
  slots: OptimizerSlot[];
  gradScale: number;
  afterSlot: ((i: number) => OffloadWork | null) | undefined;
  /** The step's hyper-parameters (param groups) for sub-groups stepped after it returned; null inside step(). */
  hyper: ParamGroup[] | null;
  /** The next sub-group to step. */
  next: number;
  /** Per sub-group once started: its reads (state, and swapped gradients); emptied once it is stepped. */
  reads: (OffloadWork | null)[][];
}

/** Runs fn with the optimizer's param groups set to `hyper` (when given), restoring them after. */
function withHyper(optimizer: Optimizer, hyper: ParamGroup[] | null, fn: () => void): void {
  if (!hyper) return fn();
  const live = optimizer.paramGroups.map((g) => ({ ...g }));
  optimizer.paramGroups.forEach((g, i) => Object.assign(g, hyper[i]));
  try {
    fn();
  } finally {
    optimizer.paramGroups.forEach((g, i) => Object.assign(g, live[i]));
  }
}

/** Consecutive optimizer slots stepped, read and written together: [first, end) with `numel` elements, slot k at `at[k - first]`. */
interface SubGroup {
  first: number;
  end: number;
  numel: number;
  at: number[];
}

/** Packs the slots, in order, into sub-groups of at most `most` elements (a slot is never split). */
export function packSubGroups(lengths: readonly number[], most: number): SubGroup[] {
  const out: SubGroup[] = [];
  let cur: SubGroup | null = null;
  lengths.forEach((n, i) => {
    if (!cur || cur.numel + n > most) {
      cur = { first: i, end: i, numel: 0, at: [] };
      out.push(cur);
    }
    cur.at.push(cur.numel);
    cur.numel += n;
    cur.end = i + 1;
  });
  return out;
}

export interface OffloadStateOptions {
  /** The fp32 masters live in the tier too (16-bit parameters). */
  withMasters: boolean;
  /**
   * The optimizer's updated 16-bit weights go to a parameter tier (offload_param): each set gets a
   * 16-bit area the slots' out16 point at while stepped, so their writes can stay in flight.
   */
  out16: 'bf16' | 'f16' | null;
}

export class OptimizerStateOffload {
  private readonly groups: SubGroup[];
  private readonly regions: OffloadRegion[];
  /** Sub-groups whose moments were never written: their first read is zeros, not a swap-in. */
  private readonly fresh: boolean[];
  private readonly staging: FlatBuffer[];
  private readonly out16Staging: FlatBuffer[];
  /** With the gradient shard swapped (grad-offload.ts): per set, the sub-group's gradients read for its step. */
  private gradStaging: FlatBuffer[] = [];
  private grads: { from: SwappedGradients; pieceOf: (i: number) => readonly [number, number] } | null = null;
  private readonly most: number;
  private readonly runtime: StateManagerArgs['runtime'];
  /** Per set: the writes still reading from it (the sub-group's state, its 16-bit weights). */
  private readonly busy: OffloadWork[][];
  /** Sub-groups read ahead of the step (prefetch), each into its set: the read, or null (nothing to read). */
  private readonly ahead = new Map<number, OffloadWork | null>();
  /** Per set: the sub-group whose updated 16-bit weights its out16 area holds (as written to the parameter tier), or -1. */
  private readonly out16Of: number[];
  /** The step in progress: sub-groups left to step after step() returned (deferred), or null. */
  private pipe: Pipeline | null = null;
  private readonly names: readonly string[];
  /** Tensors per sub-group in a region and a staging set: the master (when offloaded) and each moment. */
  private readonly tensors: number;
  private readonly lead: number;
  /** Which sub-group each slot belongs to. */
  private readonly groupOf: number[];
  readonly withMasters: boolean;

  private constructor(
    private readonly tier: OffloadTier,
    private readonly lengths: readonly number[],
    opts: OffloadStateOptions,
    private readonly section: OffloadSection,
    sets: number,
    subGroupSize: number,
    args: StateManagerArgs,
  ) {
    this.withMasters = opts.withMasters;
    this.names = args.optimizer.stateNames;
    this.lead = opts.withMasters ? 1 : 0;
    this.tensors = this.lead + this.names.length;
    this.groups = packSubGroups(lengths, subGroupSize);
    this.groupOf = lengths.map(() => 0);
    this.groups.forEach((g, k) => this.groupOf.fill(k, g.first, g.end));
    const what = opts.withMasters ? 'fp32 masters and optimizer state' : 'optimizer state';
    const rank = args.group?.rank ?? 0;
    this.regions = this.groups.map((g, k) => tier.allocate(g.numel * 4 * this.tensors, `rank ${rank} sub-group ${k} ${what}`));
    this.fresh = this.groups.map(() => true);
    const most = Math.max(1, ...this.groups.map((g) => g.numel));
    this.most = most;
    this.runtime = args.runtime;
    const host = (bytes: number) => tier.stagingBuffer?.(bytes);
    this.staging = Array.from({ length: sets }, (_, k) => allocateFlat(args.runtime, 'f32', most * this.tensors, 'offload', `offload staging set ${k}`, host(most * this.tensors * 4)));
    const out16 = opts.out16;
    this.out16Staging = out16 ? Array.from({ length: sets }, (_, k) => allocateFlat(args.runtime, out16, most, 'offload', `offload staging set ${k}: updated 16-bit weights`, host(most * 2))) : [];
    this.busy = this.staging.map(() => []);
    this.out16Of = this.staging.map(() => -1);
  }

  /**
   * The tier named by offload_optimizer.device, made by the registered plugin; null when the device is
   * 'none' or there is nothing to move. `lengths`: the optimizer slots' element counts, in order.
   */
  static async create(args: StateManagerArgs, zc: ZeroConfig, lengths: readonly number[], opts: OffloadStateOptions): Promise<OptimizerStateOffload | null> {
    const section = optimizerOffloadOf(zc);
    if (!section) return null;
    const { withMasters } = opts;
    const tensors = (withMasters ? 1 : 0) + args.optimizer.stateNames.length;
    if (tensors === 0) return null;
    // One set is stepped; pipeline_read adds the set being read, pipeline_write the one being written.
    const sets = 1 + (section.pipeline_read ? 1 : 0) + (section.pipeline_write ? 1 : 0);
    if (section.buffer_count < sets * tensors) {
      const list = [...(withMasters ? ['fp32 master'] : []), ...args.optimizer.stateNames].join(', ');
      const why = sets === 1 ? 'one sub-group in flight' : `${sets} sub-groups in flight (${[section.pipeline_read && 'pipeline_read', section.pipeline_write && 'pipeline_write'].filter(Boolean).join(' and ')})`;
      throw new DSConfigError(
        `zero_optimization.offload_optimizer.buffer_count ${section.buffer_count} is too small: a sub-group needs ${tensors} buffers (${list}) and ${why} need ${sets * tensors}; ` +
          `set buffer_count to ${sets * tensors} or more${sets > 1 ? ', or turn pipelining off' : ''}`,
      );
    }
    const tier = await tierFor(args, 'optimizer', section);
    const sub = Math.max(1, Math.floor(zc.sub_group_size));
    const state = new OptimizerStateOffload(tier, lengths, opts, section, sets, sub, args);
    const what = withMasters ? 'fp32 masters and optimizer state' : 'optimizer state';
    args.ctx.log('info', `ZeRO: ${what} offloaded to ${tier.describe()} in ${state.groups.length} sub-group(s) of at most ${Math.min(sub, lengths.reduce((a, b) => a + b, 0))} elements, ${sets} staging set(s)`);
    return state;
  }

  get tierName(): string {
    return this.tier.name;
  }

  /** Bytes resident on the device for the offloaded state: the staging sets. */
  get residentBytes(): number {
    return [...this.staging, ...this.out16Staging, ...this.gradStaging].reduce((a, s) => a + s.storage.byteLength, 0);
  }

  /**
   * `bytes` of the tier's own memory for a buffer kept there and used in place (the gradient shard),
   * where the tier lends it (cpu); null otherwise. `free` gives it back.
   */
  lend(bytes: number, label: string): { storage: Storage; bytes: number; free: () => void } | null {
    if (!this.tier.residentStorage) return null;
    const region = this.tier.allocate(bytes, label);
    return { storage: this.tier.residentStorage(region), bytes: region.bytes, free: () => this.tier.free(region) };
  }

  /**
   * The gradient shard swapped per unit (grad-offload.ts): its blocks go into this tier (one swap file
   * per rank holds both), and the step reads each slot's piece into its sub-group's staging set along
   * with the masters and moments. `pieceOf(i)`: slot i's unit and offset in that unit's block.
   */
  swapGradients(grads: SwappedGradients, pieceOf: (i: number) => readonly [number, number]): void {
    grads.attach(this.tier);
    this.grads = { from: grads, pieceOf };
    const bytes = this.most * BYTES_PER_ELEMENT[grads.dtype];
    this.gradStaging = this.staging.map((_, k) => allocateFlat(this.runtime, grads.dtype, this.most, 'offload', `offload staging set ${k}: gradients`, this.tier.stagingBuffer?.(bytes)));
  }

  /** Staging buffers are host memory (create() refuses a device engine): the typed array itself. */
  private host(buf: FlatBuffer, start: number, n: number): Float32Array {
    return hostOnly('offload staging', buf.storage.label, flatArray(buf, start, n) as F32);
  }

  /** Slot i's moments as views of its sub-group's staging set. */
  private views(buf: FlatBuffer, i: number): Record<string, Float32Array> {
    const g = this.groups[this.groupOf[i]!]!;
    const at = g.at[i - g.first]!;
    const n = this.lengths[i]!;
    return Object.fromEntries(this.names.map((name, k) => [name, this.host(buf, (this.lead + k) * g.numel + at, n)]));
  }

  /** Waits (blocking) for the writes still reading from set k. */
  private drainSync(k: number): void {
    for (const w of this.busy[k]!.splice(0)) w.waitSync();
  }

  private async drain(k: number): Promise<void> {
    for (const w of this.busy[k]!.splice(0)) await w.wait();
  }

  /** Starts reading sub-group g into its set: the master, and the moments unless they were never written (zeros then). */
  private read(g: number): OffloadWork | null {
    const buf = this.staging[g % this.staging.length]!;
    const n = this.groups[g]!.numel;
    if (!this.fresh[g]) return this.tier.swapIn(this.regions[g]!, 0, bytesOf(this.host(buf, 0, n * this.tensors)));
    this.host(buf, this.lead * n, n * this.names.length).fill(0);
    return this.withMasters ? this.tier.swapIn(this.regions[g]!, 0, bytesOf(this.host(buf, 0, n))) : null;
  }

  /**
   * Starts reading the first sub-groups (one per staging set) while backward runs: their masters and
   * moments do not depend on the gradients. The step takes them from there.
   */
  prefetch(): void {
    this.finish();
    const first = Math.min(this.staging.length, this.groups.length);
    for (let g = 0; g < first; g++) {
      if (this.ahead.has(g)) continue;
      this.drainSync(g % this.staging.length);
      this.ahead.set(g, this.read(g));
    }
  }

  /** Before the tier is read or written outside the step: the step is complete and every write has landed; with `dropAhead`, reads ahead are discarded (their bytes may change). */
  private settleSync(dropAhead: boolean): void {
    this.finish();
    this.busy.forEach((_, k) => this.drainSync(k));
    if (!dropAhead) return;
    for (const w of this.ahead.values()) w?.waitSync();
    this.ahead.clear();
  }

  /**
   * The optimizer step over every slot, one sub-group at a time through the staging sets. With
   * offloaded masters each slot's `master` is pointed at its staging view for its step, and with a
   * parameter tier its `out16` too; `afterSlot(i)` runs once slot i is stepped and returns the write
   * of its 16-bit weights when they go to a tier (kept in flight with the set's other writes).
   *
   * With `defer` (stage 3, whose next forward reads each unit's weights through completeSlots()) and
   * the gradients swapped (so zeroing them after the step does not touch what the rest reads), only
   * the sub-groups read ahead are stepped before this returns; the others are stepped as the next
   * forward needs their units (completeSlots) or gets to a hook (pump), with the hyper-parameters of
   * this step, so that their reads and writes run under its compute. finish() completes them.
   */
  async step(optimizer: Optimizer, slots: OptimizerSlot[], gradScale: number, afterSlot: ((i: number) => OffloadWork | null) | undefined, defer: boolean): Promise<void> {
    this.finish();
    const p: Pipeline = { optimizer, slots, gradScale, afterSlot, hyper: null, next: 0, reads: [] };
    this.pipe = p;
    const count = this.groups.length;
    // Read ahead during backward: the state is in flight or there; the gradients can come now.
    const readAhead = [...this.ahead.keys()];
    for (const g of readAhead) this.startRead(p, g);
    const stop = defer && this.grads ? Math.min(count, Math.max(1, readAhead.length)) : count;
    while (p.next < stop) {
      await this.ready(p, p.next);
      this.runNext(p);
    }
    // The hyper-parameters the deferred sub-groups use: this step's (a scheduler may change them after it).
    if (this.pipe) p.hyper = optimizer.paramGroups.map((g) => ({ ...g }));
    // The last writes stay in flight: the next prefetch or step, a blocking read, or close() waits for them.
  }

  /** Awaits what sub-group g's step would block on (its reads; the set its read-ahead goes to), so that runNext does not block. */
  private async ready(p: Pipeline, g: number): Promise<void> {
    const sets = this.staging.length;
    if (!p.reads[g]) {
      await this.drain(g % sets);
      this.startRead(p, g);
    }
    for (const w of p.reads[g]!) await w?.wait();
    if (this.section.pipeline_read && g + 1 < this.groups.length && !p.reads[g + 1]) await this.drain((g + 1) % sets);
  }

  /** Starts sub-group g's reads into its set (the state read ahead by prefetch(), or now, once the set's writes landed; blocking for those). */
  private startRead(p: Pipeline, g: number): void {
    if (p.reads[g]) return;
    const k = g % this.staging.length;
    let state: OffloadWork | null;
    if (this.ahead.has(g)) {
      state = this.ahead.get(g)!;
      this.ahead.delete(g);
    } else {
      this.drainSync(k);
      state = this.read(g);
    }
    p.reads[g] = [state, ...this.readGradients(g, k)];
  }

  /** Steps the pipeline's next sub-group (blocking for what is not there yet) and starts its writes. */
  private runNext(p: Pipeline): void {
    const g = p.next;
    const k = g % this.staging.length;
    const buf = this.staging[k]!;
    const { pipeline_read: readAhead, pipeline_write: writeBehind } = this.section;
    this.startRead(p, g);
    for (const w of p.reads[g]!) w?.waitSync();
    p.reads[g] = [];
    if (readAhead && g + 1 < this.groups.length) this.startRead(p, g + 1);
    const group = this.groups[g]!;
    const { optimizer, slots } = p;
    for (let i = group.first; i < group.end; i++) {
      const at = group.at[i - group.first]!;
      const n = this.lengths[i]!;
      if (this.withMasters) slots[i]!.master = this.host(buf, at, n);
      if (this.out16Staging.length > 0) slots[i]!.out16 = hostOnly('offload staging', 'updated 16-bit weights', flatArray(this.out16Staging[k]!, at, n) as U16);
      if (this.grads) slots[i]!.grad = flatArray(this.gradStaging[k]!, at, n);
      if (this.names.length > 0) optimizer.adoptState(i, this.views(buf, i));
    }
    withHyper(optimizer, p.hyper, () => optimizer.step(slots.slice(group.first, group.end), { gradScale: p.gradScale, firstSlot: group.first }));
    this.out16Of[k] = g;
    this.fresh[g] = false;
    const writes = [this.tier.swapOut(this.regions[g]!, 0, bytesOf(this.host(buf, 0, group.numel * this.tensors)))];
    for (let i = group.first; i < group.end; i++) {
      const w = p.afterSlot?.(i);
      if (w) writes.push(w);
    }
    this.busy[k] = writes;
    if (!writeBehind) this.drainSync(k);
    p.next += 1;
    if (p.next >= this.groups.length) this.pipe = null;
  }

  /** Deferred step: steps every sub-group holding a slot up to `slot` (blocking), e.g. before a unit's weights are read. */
  completeSlots(slot: number): void {
    const p = this.pipe;
    if (!p) return;
    const g = this.groupOf[Math.min(slot, this.groupOf.length - 1)]!;
    while (this.pipe === p && p.next <= g) this.runNext(p);
  }

  /**
   * Copies slot i's updated 16-bit weights into `dst` when its sub-group's staging set still holds
   * them (the set is not yet reused by a later sub-group); false otherwise (read them from the tier).
   */
  copyOut16(i: number, dst: Uint16Array): boolean {
    const g = this.groupOf[i]!;
    const k = g % this.staging.length;
    if (this.out16Staging.length === 0 || this.out16Of[k] !== g || !this.stepped(i)) return false;
    const group = this.groups[g]!;
    const at = group.at[i - group.first]!;
    dst.set(hostOnly('offload staging', 'updated 16-bit weights', flatArray(this.out16Staging[k]!, at, this.lengths[i]!) as U16) as Uint16Array);
    return true;
  }

  /** The 16-bit weights were written outside the step (a checkpoint load): the staging sets' copies are stale. */
  forgetOut16(): void {
    this.out16Of.fill(-1);
  }

  /** Whether the sub-group holding `slot` is stepped (always, outside a deferred step). */
  stepped(slot: number): boolean {
    return !this.pipe || this.groupOf[Math.min(slot, this.groupOf.length - 1)]! < this.pipe.next;
  }

  /** Deferred step: steps the next sub-groups whose reads have landed, without blocking (from hooks, to keep the disk busy). */
  pump(): void {
    const p = this.pipe;
    if (!p) return;
    const sets = this.staging.length;
    while (this.pipe === p) {
      const g = p.next;
      const reads = p.reads[g];
      if (!reads) {
        if (!this.busy[g % sets]!.every((w) => w.isCompleted())) return;
        this.startRead(p, g);
        continue;
      }
      if (!reads.every((w) => !w || w.isCompleted())) return;
      if (this.section.pipeline_read && g + 1 < this.groups.length && !p.reads[g + 1] && !this.busy[(g + 1) % sets]!.every((w) => w.isCompleted())) return;
      this.runNext(p);
    }
  }

  /** Deferred step: steps what is left of it (blocking). */
  finish(): void {
    const p = this.pipe;
    while (p && this.pipe === p) this.runNext(p);
  }

  /** Starts reading sub-group g's swapped gradients into set k's gradient area, slot by slot (none when they are resident). */
  private readGradients(g: number, k: number): (OffloadWork | null)[] {
    if (!this.grads) return [];
    const group = this.groups[g]!;
    const out: (OffloadWork | null)[] = [];
    for (let i = group.first; i < group.end; i++) {
      const [u, at] = this.grads.pieceOf(i);
      const dst = hostOnly('offload staging', 'gradients', flatArray(this.gradStaging[k]!, group.at[i - group.first]!, this.lengths[i]!)) as Float32Array | Uint16Array;
      out.push(this.grads.from.readPiece(u, at, bytesOf(dst)));
    }
    return out;
  }

  /** Where slot i lies: its region, its sub-group's element count and its offset there. */
  private place(i: number): { region: OffloadRegion; numel: number; at: number } {
    const g = this.groupOf[i]!;
    const group = this.groups[g]!;
    return { region: this.regions[g]!, numel: group.numel, at: group.at[i - group.first]! };
  }

  /** Slot i's moments, read back (blocking; for checkpoints). */
  readSlot(i: number): Record<string, Float32Array> {
    this.settleSync(false);
    const n = this.lengths[i]!;
    const { region, numel, at } = this.place(i);
    const fresh = this.fresh[this.groupOf[i]!]!;
    return Object.fromEntries(
      this.names.map((name, k) => {
        const out = new Float32Array(n);
        if (!fresh) this.tier.swapIn(region, ((this.lead + k) * numel + at) * 4, bytesOf(out)).waitSync();
        return [name, out];
      }),
    );
  }

  /** Replaces slot i's moments (blocking; for checkpoint loads, which replace every slot's). */
  writeSlot(i: number, tensors: Readonly<Record<string, Float32Array>>): void {
    this.settleSync(true);
    const { region, numel, at } = this.place(i);
    this.names.forEach((name, k) => this.tier.swapOut(region, ((this.lead + k) * numel + at) * 4, bytesOf(tensors[name]!.subarray(0, this.lengths[i]!))).waitSync());
    this.fresh[this.groupOf[i]!] = false;
  }

  /** Slot i's fp32 master into `dst` (blocking; masters must be offloaded). */
  readMaster(i: number, dst: Float32Array): void {
    this.settleSync(false);
    const { region, at } = this.place(i);
    this.tier.swapIn(region, at * 4, bytesOf(dst.subarray(0, this.lengths[i]!))).waitSync();
  }

  /** Replaces slot i's fp32 master (blocking). */
  writeMaster(i: number, src: Float32Array): void {
    this.settleSync(true);
    const { region, at } = this.place(i);
    this.tier.swapOut(region, at * 4, bytesOf(src.subarray(0, this.lengths[i]!))).waitSync();
  }

  /** Waits for the transfers in flight, then releases the regions, the staging sets and the tier. */
  async close(): Promise<void> {
    // A deferred step's rest is dropped with the state; its transfers in flight are waited for.
    const rest = this.pipe?.reads.flat().filter((w): w is OffloadWork => w !== null) ?? [];
    this.pipe = null;
    const errors: unknown[] = [];
    for (const w of rest) await w.wait().catch((e: unknown) => errors.push(e));
    const pending = [...this.busy.flatMap((b) => b.splice(0)), ...[...this.ahead.values()].filter((w): w is OffloadWork => w !== null)];
    this.ahead.clear();
    for (const w of pending) await w.wait().catch((e: unknown) => errors.push(e));
    for (const r of this.regions) this.tier.free(r);
    for (const s of [...this.staging, ...this.out16Staging, ...this.gradStaging]) releaseFlat(s);
    await this.tier.close();
    if (errors.length > 0) throw errors[0];
  }
}
