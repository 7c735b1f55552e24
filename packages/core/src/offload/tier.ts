// The offload tier contract: a place outside the device's memory budget where model states live
// between uses (DeepSpeed's ZeRO-Offload keeps optimizer state in host memory, ZeRO-Infinity on
// NVMe). Tiers come from plugins through the registry's `offloadTiers`, keyed by the `device` value
// of `offload_optimizer` / `offload_param`; core never imports one. A ZeRO state asks for its tier,
// allocates one region per sub-group, and moves byte ranges in and out asynchronously, so the next
// sub-group's read overlaps the current one's optimizer step.
import type { Storage } from '@ds/tensor';

/** The offload section a tier is made for, as validated by the plugin that owns it. */
export interface OffloadTierOptions {
  /** 'optimizer' for offload_optimizer, 'param' for offload_param. */
  readonly kind: 'optimizer' | 'param';
  /** The section's keys (device, nvme_path, buffer_count, pin_memory, ...). */
  readonly section: Readonly<Record<string, unknown>>;
  /** The `aio` section when the config has one. */
  readonly aio?: Readonly<Record<string, unknown>>;
}

/** A reserved extent in a tier. */
export interface OffloadRegion {
  readonly tier: string;
  readonly id: number;
  readonly bytes: number;
  /** What lives there, for errors and stats (e.g. "rank 1 sub-group 3 optimizer state"). */
  readonly label: string;
}

/** One swap in flight. */
export interface OffloadWork {
  /** Resolves when the bytes have moved; rejects with a DSError naming file, offset and cause. */
  wait(): Promise<void>;
  /** Blocks the calling thread until the bytes have moved (for code inside hooks); throws like wait(). */
  waitSync(): void;
  isCompleted(): boolean;
}

export interface OffloadStats {
  regions: number;
  bytesReserved: number;
  bytesWritten: number;
  bytesRead: number;
  swapOuts: number;
  swapIns: number;
}

export interface OffloadTier {
  /** The device name it serves ('cpu', 'nvme'). */
  readonly name: string;
  /** Reserves `bytes`; throws a DSError when the tier cannot hold them (naming need and free bytes). */
  allocate(bytes: number, label: string): OffloadRegion;
  /** Copies `src` into the region at byte `offset`. `src` must not change until the work completes. */
  swapOut(region: OffloadRegion, offset: number, src: Uint8Array): OffloadWork;
  /** Copies `dst.byteLength` bytes from the region at byte `offset` into `dst`. */
  swapIn(region: OffloadRegion, offset: number, dst: Uint8Array): OffloadWork;
  free(region: OffloadRegion): void;
  /**
   * Optional: `bytes` of zeroed host memory that this tier moves without an extra copy (4096-byte
   * aligned for an O_DIRECT tier, whose transfers from unaligned memory go through a bounce buffer).
   * Staging buffers are made from it where the tier offers it.
   */
  stagingBuffer?(bytes: number): ArrayBuffer;
  /**
   * Optional, for a tier whose regions are host memory the process addresses directly (cpu): the
   * storage behind `region`, so that a stage can keep a buffer there and work on it in place instead
   * of swapping it. The tier owns it: free(region) releases it.
   */
  residentStorage?(region: OffloadRegion): Storage;
  /** A line for logs: where the tier keeps its bytes. */
  describe(): string;
  stats(): OffloadStats;
  /** Waits for outstanding swaps and releases everything (files are removed). */
  close(): Promise<void>;
}

/** The bytes of a typed array, for swapping. */
export function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
