// The optimizer side of ZeRO-Offload / ZeRO-Infinity (DeepSpeed's OptimizerSwapper and
// PipelinedOptimizerSwapper): each optimizer sub-group (a slot of at most sub_group_size elements)
// has a region in the tier named by zero_optimization.offload_optimizer.device holding its fp32
// master weights followed by its optimizer moments, so between steps none of them is on the device.
// The step streams the sub-groups through staging sets (one set holds a sub-group's master and
// moments): with `pipeline_read` the read of sub-group i+1 runs while i is stepped, with
// `pipeline_write` the write of i-1 completes while i is stepped; `buffer_count` is DeepSpeed's pool
// of sub-group-sized tensor buffers, of which a staging set takes one per tensor (3 for Adam).
//
// With an fp32 model the parameters are the masters (no separate copy exists): only the moments move.
// Staging sets are host memory (create() refuses a device engine), counted by the tracker as
// 'offload' on the engine's device: they are the only optimizer bytes that device keeps.
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
  type StateManagerArgs,
} from '@ds/core';

import { hostOnly, type F32 } from '@ds/tensor';
import type { ZeroConfig } from './config.js';

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

export class OptimizerStateOffload {
  private readonly regions: OffloadRegion[];
  /** Slots whose moments were never written: their first read is zeros, not a swap-in. */
  private readonly fresh: boolean[];
  private readonly staging: FlatBuffer[];
  private readonly names: readonly string[];
  /** Tensors per sub-group in a region and a staging set: the master (when offloaded) and each moment. */
  private readonly tensors: number;
  private readonly lead: number;

  private constructor(
    private readonly tier: OffloadTier,
    private readonly lengths: readonly number[],
    readonly withMasters: boolean,
    private readonly section: OffloadSection,
    sets: number,
    args: StateManagerArgs,
  ) {
    this.names = args.optimizer.stateNames;
    this.lead = withMasters ? 1 : 0;
    this.tensors = this.lead + this.names.length;
    const what = withMasters ? 'fp32 masters and optimizer state' : 'optimizer state';
    this.regions = lengths.map((n, i) => tier.allocate(n * 4 * this.tensors, `rank ${args.group?.rank ?? 0} sub-group ${i} ${what}`));
    this.fresh = lengths.map(() => true);
    const most = Math.max(1, ...lengths) * this.tensors;
    this.staging = Array.from({ length: sets }, (_, k) => allocateFlat(args.runtime, 'f32', most, 'offload', `offload staging set ${k}`));
  }

  /**
   * The tier named by offload_optimizer.device, made by the registered plugin; null when the device is
   * 'none' or there is nothing to move. `withMasters`: the fp32 masters live in the tier too.
   */
  static async create(args: StateManagerArgs, zc: ZeroConfig, lengths: readonly number[], withMasters: boolean): Promise<OptimizerStateOffload | null> {
    const section = optimizerOffloadOf(zc);
    if (!section) return null;
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
    const what = withMasters ? 'fp32 masters and optimizer state' : 'optimizer state';
    args.ctx.log('info', `ZeRO: ${what} offloaded to ${tier.describe()} in ${lengths.length} sub-group(s), ${sets} staging set(s)`);
    return new OptimizerStateOffload(tier, lengths, withMasters, section, sets, args);
  }

  get tierName(): string {
    return this.tier.name;
  }

  /** Bytes resident on the device for the offloaded state: the staging sets. */
  get residentBytes(): number {
    return this.staging.reduce((a, s) => a + s.storage.byteLength, 0);
  }

  /** Staging buffers are host memory (create() refuses a device engine): the typed array itself. */
  private host(buf: FlatBuffer, start: number, n: number): Float32Array {
    return hostOnly('offload staging', buf.storage.label, flatArray(buf, start, n) as F32);
  }

  /** Slot i's moments as views of a staging set. */
  private views(buf: FlatBuffer, i: number): Record<string, Float32Array> {
    const n = this.lengths[i]!;
    return Object.fromEntries(this.names.map((name, k) => [name, this.host(buf, (this.lead + k) * n, n)]));
  }

  /** Starts reading slot i into `buf`: the master, and the moments unless they were never written (zeros then). */
  private read(buf: FlatBuffer, i: number): OffloadWork | null {
    const n = this.lengths[i]!;
    if (!this.fresh[i]) return this.tier.swapIn(this.regions[i]!, 0, bytesOf(this.host(buf, 0, n * this.tensors)));
    this.host(buf, this.lead * n, n * this.names.length).fill(0);
    return this.withMasters ? this.tier.swapIn(this.regions[i]!, 0, bytesOf(this.host(buf, 0, n))) : null;
  }

  private write(buf: FlatBuffer, i: number): OffloadWork {
    this.fresh[i] = false;
    return this.tier.swapOut(this.regions[i]!, 0, bytesOf(this.host(buf, 0, this.lengths[i]! * this.tensors)));
  }

  /**
   * The optimizer step over every slot, one sub-group at a time through the staging sets. With
   * offloaded masters each slot's `master` is pointed at its staging view for its step (the 16-bit
   * parameters are written through `out16` as without offload); `afterSlot(i)` runs once slot i is stepped.
   */
  async step(optimizer: Optimizer, slots: OptimizerSlot[], gradScale: number, afterSlot?: (i: number) => void): Promise<void> {
    const sets = this.staging.length;
    const { pipeline_read: ahead, pipeline_write: behind } = this.section;
    const writes: (OffloadWork | null)[] = slots.map(() => null);
    const reads: (OffloadWork | null)[] = slots.map(() => null);
    // Slot j's set is reused by slot j + sets: its write must be complete before that read starts.
    const startRead = async (j: number) => {
      await writes[j - sets]?.wait();
      reads[j] = this.read(this.staging[j % sets]!, j);
    };
    if (slots.length > 0) await startRead(0);
    for (let i = 0; i < slots.length; i++) {
      const buf = this.staging[i % sets]!;
      if (!ahead && i > 0) await startRead(i);
      await reads[i]?.wait();
      if (ahead && i + 1 < slots.length) await startRead(i + 1);
      const n = this.lengths[i]!;
      if (this.withMasters) slots[i]!.master = this.host(buf, 0, n);
      if (this.names.length > 0) optimizer.adoptState(i, this.views(buf, i));
      optimizer.step([slots[i]!], { gradScale, firstSlot: i });
      afterSlot?.(i);
      writes[i] = this.write(buf, i);
      if (!behind) await writes[i]!.wait();
    }
    await Promise.all(writes.map((w) => w?.wait()));
  }

  /** Slot i's moments, read back whole (blocking; for checkpoints). */
  readSlot(i: number): Record<string, Float32Array> {
    const n = this.lengths[i]!;
    const out = new Float32Array(n * this.names.length);
    if (!this.fresh[i]) this.tier.swapIn(this.regions[i]!, this.lead * n * 4, bytesOf(out)).waitSync();
    return Object.fromEntries(this.names.map((name, k) => [name, out.slice(k * n, (k + 1) * n)]));
  }

  /** Replaces slot i's moments (blocking; for checkpoint loads). */
  writeSlot(i: number, tensors: Readonly<Record<string, Float32Array>>): void {
    const n = this.lengths[i]!;
    const all = new Float32Array(n * this.names.length);
    this.names.forEach((name, k) => all.set(tensors[name]!, k * n));
    this.fresh[i] = false;
    this.tier.swapOut(this.regions[i]!, this.lead * n * 4, bytesOf(all)).waitSync();
  }

  /** Slot i's fp32 master into `dst` (blocking; masters must be offloaded). */
  readMaster(i: number, dst: Float32Array): void {
    this.tier.swapIn(this.regions[i]!, 0, bytesOf(dst.subarray(0, this.lengths[i]!))).waitSync();
  }

  /** Replaces slot i's fp32 master (blocking). */
  writeMaster(i: number, src: Float32Array): void {
    this.tier.swapOut(this.regions[i]!, 0, bytesOf(src.subarray(0, this.lengths[i]!))).waitSync();
  }

  async close(): Promise<void> {
    for (const r of this.regions) this.tier.free(r);
    for (const s of this.staging) releaseFlat(s);
    await this.tier.close();
  }
}
