// Optimizer state in an offload tier (zero_optimization.offload_optimizer.device names a tier a
// registered plugin contributes, e.g. @ds/offload-nvme's `cpu` and `nvme`). Each optimizer slot (a
// sub-group of sub_group_size elements, DeepSpeed's unit of offloaded stepping) has a region in the
// tier holding its moments; the step streams them through two staging buffers: slot i+1 is read
// while slot i is stepped, and slot i is written back while slot i+1 is stepped.
//
// What this moves today is the optimizer moments; the fp32 master shard stays resident (DeepSpeed's
// ZeRO-Offload moves both). @ds/offload-nvme's cpu and nvme tiers take any byte region, so the
// masters can follow through the same allocate / swapIn / swapOut calls: not built yet.
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

export class OptimizerStateOffload {
  private readonly regions: OffloadRegion[];
  /** Slots whose state was never written: their first read is zeros, not a swap-in. */
  private readonly fresh: boolean[];
  private readonly staging: [FlatBuffer, FlatBuffer];
  private readonly names: readonly string[];

  private constructor(
    private readonly tier: OffloadTier,
    private readonly lengths: readonly number[],
    args: StateManagerArgs,
  ) {
    this.names = args.optimizer.stateNames;
    const per = this.names.length;
    this.regions = lengths.map((n, i) => tier.allocate(n * 4 * per, `rank ${args.group?.rank ?? 0} sub-group ${i} optimizer state`));
    this.fresh = lengths.map(() => true);
    const most = Math.max(1, ...lengths) * per;
    this.staging = [0, 1].map((k) => allocateFlat(args.runtime, 'f32', most, 'offload', `offload staging ${k}`)) as [FlatBuffer, FlatBuffer];
  }

  /** The tier named by offload_optimizer.device, made by the registered plugin; null when the device is 'none'. */
  static async create(args: StateManagerArgs, zc: ZeroConfig, lengths: readonly number[]): Promise<OptimizerStateOffload | null> {
    const section = zc.offload_optimizer as ({ device: string } & Record<string, unknown>) | null;
    if (!section || section.device === 'none') return null;
    if (args.io.device !== 'cpu') {
      // The tiers move host bytes and the optimizer would step device masters with host moments.
      throw new DSConfigError(
        `zero_optimization.offload_optimizer.device '${section.device}' with a model on '${args.io.device}' is not supported yet: optimizer offload runs with the model on the cpu device; remove offload_optimizer or train on cpu`,
      );
    }
    const claim = args.ctx.registry.get('offloadTiers', section.device);
    if (!claim) {
      const pkg = knownPluginByPackage('@ds/offload-nvme')!;
      throw new DSConfigError(`zero_optimization.offload_optimizer.device '${section.device}' needs an offload tier of that name (registered: ${args.ctx.registry.names('offloadTiers').join(', ') || 'none'}): ${registerHint(pkg)}`);
    }
    if (args.optimizer.stateNames.length === 0) return null;
    const aio = args.config.aio as Record<string, unknown> | undefined;
    const tier = await claim.value({ kind: 'optimizer', section, ...(aio ? { aio } : {}) }, args.ctx);
    args.ctx.log('info', `ZeRO: optimizer state offloaded to ${tier.describe()} in ${lengths.length} sub-group(s)`);
    return new OptimizerStateOffload(tier, lengths, args);
  }

  get tierName(): string {
    return this.tier.name;
  }

  /** Bytes resident on the device for the offloaded state: the staging buffers. */
  get residentBytes(): number {
    return this.staging[0].storage.byteLength + this.staging[1].storage.byteLength;
  }

  /** Slot i's state arrays as views of a staging buffer. */
  private views(buf: FlatBuffer, i: number): Record<string, Float32Array> {
    const n = this.lengths[i]!;
    return Object.fromEntries(this.names.map((name, k) => [name, this.host(buf, k * n, n)]));
  }

  /** Staging buffers are host memory (create() refuses a device engine): the typed array itself. */
  private host(buf: FlatBuffer, start: number, n: number): Float32Array {
    return hostOnly('offload staging', buf.storage.label, flatArray(buf, start, n) as F32);
  }

  private stageBytes(buf: FlatBuffer, i: number): Uint8Array {
    return bytesOf(this.host(buf, 0, this.lengths[i]! * this.names.length));
  }

  /** Starts reading slot i into `buf` (zeros for a slot never written). */
  private read(buf: FlatBuffer, i: number): OffloadWork | null {
    if (this.fresh[i]) {
      this.host(buf, 0, this.lengths[i]! * this.names.length).fill(0);
      return null;
    }
    return this.tier.swapIn(this.regions[i]!, 0, this.stageBytes(buf, i));
  }

  private write(buf: FlatBuffer, i: number): OffloadWork {
    this.fresh[i] = false;
    return this.tier.swapOut(this.regions[i]!, 0, this.stageBytes(buf, i));
  }

  /** The optimizer step over every slot, one sub-group at a time, reads and writes overlapped with it. */
  async step(optimizer: Optimizer, slots: readonly OptimizerSlot[], gradScale: number): Promise<void> {
    const writes: (OffloadWork | null)[] = slots.map(() => null);
    let reading = this.read(this.staging[0], 0);
    for (let i = 0; i < slots.length; i++) {
      const buf = this.staging[i % 2];
      await reading?.wait();
      if (i + 1 < slots.length) {
        const next = this.staging[(i + 1) % 2];
        await writes[i - 1]?.wait(); // the buffer the next read fills held slot i-1
        reading = this.read(next, i + 1);
      }
      optimizer.adoptState(i, this.views(buf, i));
      optimizer.step([slots[i]!], { gradScale, firstSlot: i });
      writes[i] = this.write(buf, i);
    }
    await Promise.all(writes.map((w) => w?.wait()));
  }

  /** Slot i's state, read back whole (blocking; for checkpoints). */
  readSlot(i: number): Record<string, Float32Array> {
    const out = new Float32Array(this.lengths[i]! * this.names.length);
    if (!this.fresh[i]) this.tier.swapIn(this.regions[i]!, 0, bytesOf(out)).waitSync();
    const n = this.lengths[i]!;
    return Object.fromEntries(this.names.map((name, k) => [name, out.slice(k * n, (k + 1) * n)]));
  }

  /** Replaces slot i's state (blocking; for checkpoint loads). */
  writeSlot(i: number, tensors: Readonly<Record<string, Float32Array>>): void {
    const n = this.lengths[i]!;
    const all = new Float32Array(n * this.names.length);
    this.names.forEach((name, k) => all.set(tensors[name]!, k * n));
    this.fresh[i] = false;
    this.tier.swapOut(this.regions[i]!, 0, bytesOf(all)).waitSync();
  }

  async close(): Promise<void> {
    for (const r of this.regions) this.tier.free(r);
    releaseFlat(this.staging[0]);
    releaseFlat(this.staging[1]);
    await this.tier.close();
  }
}
