// The `cpu` tier (ZeRO-Offload's host memory): each region is a host buffer of its own, counted by
// the memory tracker under category 'offload' on the device 'host', so it stays outside the device
// budget DS_MEMORY_LIMIT enforces. On the cpu device the "device" and the "host" are the same RAM;
// this split is the accounting DeepSpeed users know (GPU memory vs pinned host memory), not a
// physical one. Swaps are memory copies, complete when they return. With pin_memory each region's
// pages are locked in RAM (mlock), as DeepSpeed pins its host buffers.
import { DSConfigError, DSOutOfMemoryError, DSShapeError, type OffloadRegion, type OffloadStats, type OffloadTier, type OffloadWork } from '@ds/core';
import { Storage, type MemoryTracker } from '@ds/tensor';

import { loadAioAddon } from '../native/load.js';

/** The tracker device the cpu tier's bytes are counted on. */
export const HOST_DEVICE = 'host';

const DONE: OffloadWork = { wait: async () => {}, waitSync: () => {}, isCompleted: () => true };

export class CpuTier implements OffloadTier {
  readonly name = 'cpu';
  private readonly regions = new Map<number, { region: OffloadRegion; storage: Storage; bytes: Uint8Array; buf: ArrayBuffer }>();
  private nextId = 0;
  private readonly st: OffloadStats = { regions: 0, bytesReserved: 0, bytesWritten: 0, bytesRead: 0, swapOuts: 0, swapIns: 0 };

  constructor(
    private readonly tracker: MemoryTracker,
    /** pin_memory: page-lock every region (mlock). */
    readonly pinned = false,
  ) {}

  allocate(bytes: number, label: string): OffloadRegion {
    let buf: ArrayBuffer;
    try {
      buf = new ArrayBuffer(bytes);
    } catch (e) {
      throw new DSOutOfMemoryError(`cpu offload tier: cannot allocate ${bytes} B of host memory for ${label} (${this.st.bytesReserved} B already held); offload to 'nvme' instead or give the process more memory`, { cause: e });
    }
    if (this.pinned) {
      const e = loadAioAddon().lockMemory(buf, true);
      if (e !== 0) {
        throw new DSConfigError(
          `zero_optimization.offload_optimizer.pin_memory: cannot page-lock ${bytes} B for ${label} (mlock: errno ${e}; ${this.st.bytesReserved} B already locked): ` +
            'raise the locked-memory limit (ulimit -l, RLIMIT_MEMLOCK) or set pin_memory false',
        );
      }
    }
    const storage = Storage.wrap(this.tracker, buf, 0, bytes, { device: HOST_DEVICE, category: 'offload', label: `cpu offload: ${label}` });
    storage.retain();
    const region: OffloadRegion = { tier: this.name, id: this.nextId++, bytes, label };
    this.regions.set(region.id, { region, storage, bytes: new Uint8Array(buf), buf });
    this.st.regions++;
    this.st.bytesReserved += bytes;
    return region;
  }

  private span(region: OffloadRegion, offset: number, n: number, what: string): Uint8Array {
    const r = this.regions.get(region.id);
    if (!r || r.region !== region) throw new DSShapeError(`cpu offload tier: ${what} on region ${region.id} (${region.label}), which is not live here (freed, or from another tier)`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > region.bytes) {
      throw new DSShapeError(`cpu offload tier: ${what} of bytes ${offset}..${offset + n} is outside region ${region.id} (${region.label}, ${region.bytes} B)`);
    }
    return r.bytes.subarray(offset, offset + n);
  }

  swapOut(region: OffloadRegion, offset: number, src: Uint8Array): OffloadWork {
    this.span(region, offset, src.byteLength, 'swapOut').set(src);
    this.st.swapOuts++;
    this.st.bytesWritten += src.byteLength;
    return DONE;
  }

  swapIn(region: OffloadRegion, offset: number, dst: Uint8Array): OffloadWork {
    dst.set(this.span(region, offset, dst.byteLength, 'swapIn'));
    this.st.swapIns++;
    this.st.bytesRead += dst.byteLength;
    return DONE;
  }

  /** The region's host storage (counted as 'offload' on 'host'), for a buffer kept in this tier and used in place. */
  residentStorage(region: OffloadRegion): Storage {
    const r = this.regions.get(region.id);
    if (!r || r.region !== region) throw new DSShapeError(`cpu offload tier: residentStorage of region ${region.id} (${region.label}), which is not live here (freed, or from another tier)`);
    return r.storage;
  }

  free(region: OffloadRegion): void {
    const r = this.regions.get(region.id);
    if (!r || r.region !== region) return;
    this.regions.delete(region.id);
    if (this.pinned) loadAioAddon().lockMemory(r.buf, false);
    r.storage.release(false);
    this.st.regions--;
    this.st.bytesReserved -= region.bytes;
  }

  describe(): string {
    return `host memory (cpu tier${this.pinned ? ', page-locked' : ''}, ${this.st.bytesReserved} B counted as 'offload' on '${HOST_DEVICE}', outside DS_MEMORY_LIMIT)`;
  }

  stats(): OffloadStats {
    return { ...this.st };
  }

  async close(): Promise<void> {
    for (const { region } of [...this.regions.values()]) this.free(region);
  }
}
