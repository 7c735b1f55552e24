// Live and peak bytes per device and per category, and the DS_MEMORY_LIMIT budget.
//
// Every Storage reports its allocation and its release here; benchmarks and tests read memory from
// this tracker, never from the process RSS. A limit applies per device: an allocation that would
// take the device's live total past it throws DSOutOfMemoryError naming the category asked for and
// the largest live holders.

import { DSOutOfMemoryError } from '../errors.js';
import { BufferCache } from './cache.js';

export const MEMORY_CATEGORIES = ['parameters', 'gradients', 'optimizer_states', 'activations', 'communication', 'offload', 'other'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

/** What the tracker needs to know about a live allocation. */
export interface MemoryHolder {
  readonly device: string;
  readonly byteLength: number;
  readonly category: MemoryCategory;
  readonly label: string;
}

export interface CategoryUsage {
  live: number;
  peak: number;
}

export interface DeviceUsage {
  live: number;
  peak: number;
  categories: Record<MemoryCategory, CategoryUsage>;
}

function emptyUsage(): DeviceUsage {
  const categories = {} as Record<MemoryCategory, CategoryUsage>;
  for (const c of MEMORY_CATEGORIES) categories[c] = { live: 0, peak: 0 };
  return { live: 0, peak: 0, categories };
}

export class MemoryTracker {
  private readonly usage = new Map<string, DeviceUsage>();
  private readonly holders = new Set<MemoryHolder>();
  /** Storages reclaimed by the FinalizationRegistry safety net: each one was a missed dispose(). */
  gcReclaimed = 0;

  /** Freed CPU buffers kept for reuse (cache.ts); its bytes are not live. */
  readonly cache: BufferCache;
  /** True: uninitialized allocations are filled with 0xFF bytes (DS_POISON_UNINIT). */
  poisonUninit: boolean;

  /**
   * @param limit bytes per device; undefined means unlimited.
   * @param opts cacheLimit: most bytes the buffer cache keeps (0: no caching); poisonUninit: see above.
   */
  constructor(public limit: number | undefined = undefined, opts: { cacheLimit?: number; poisonUninit?: boolean } = {}) {
    this.cache = new BufferCache(opts.cacheLimit ?? 0);
    this.poisonUninit = opts.poisonUninit ?? false;
  }

  private device(device: string): DeviceUsage {
    let u = this.usage.get(device);
    if (!u) {
      u = emptyUsage();
      this.usage.set(device, u);
    }
    return u;
  }

  /** Throws DSOutOfMemoryError when `bytes` more on `device` would pass the limit. */
  check(device: string, bytes: number, category: MemoryCategory, label: string): void {
    if (this.limit === undefined) return;
    const live = this.device(device).live;
    // Cached buffers count against the budget too (they are process memory): drop them first.
    if (device === 'cpu') this.cache.trim(Math.max(0, this.limit - live - bytes));
    if (live + bytes <= this.limit) return;
    const top = this.largestHolders(device, 5)
      .map((h) => `${h.label} (${h.category}, ${h.byteLength} B)`)
      .join(', ');
    throw new DSOutOfMemoryError(
      `out of memory on ${device}: allocating ${bytes} B for ${category} (${label}) would bring live bytes to ${live + bytes}, ` +
        `over DS_MEMORY_LIMIT=${this.limit}. Largest holders: ${top || 'none'}. ` +
        'Raise DS_MEMORY_LIMIT, reduce the batch, or enable ZeRO/offload/activation checkpointing.',
    );
  }

  onAlloc(h: MemoryHolder): void {
    const d = this.device(h.device);
    const c = d.categories[h.category];
    d.live += h.byteLength;
    c.live += h.byteLength;
    d.peak = Math.max(d.peak, d.live);
    c.peak = Math.max(c.peak, c.live);
    this.holders.add(h);
  }

  onFree(h: MemoryHolder): void {
    if (!this.holders.delete(h)) return;
    const d = this.device(h.device);
    d.live -= h.byteLength;
    d.categories[h.category].live -= h.byteLength;
  }

  /** Moves a live holder's bytes from one category to another (a tensor becoming a parameter). */
  recategorize(h: MemoryHolder, from: MemoryCategory): void {
    if (!this.holders.has(h) || from === h.category) return;
    const d = this.device(h.device);
    d.categories[from].live -= h.byteLength;
    const c = d.categories[h.category];
    c.live += h.byteLength;
    c.peak = Math.max(c.peak, c.live);
  }

  liveBytes(device = 'cpu', category?: MemoryCategory): number {
    const d = this.device(device);
    return category ? d.categories[category].live : d.live;
  }

  peakBytes(device = 'cpu', category?: MemoryCategory): number {
    const d = this.device(device);
    return category ? d.categories[category].peak : d.peak;
  }

  /** Starts a new peak window: peaks become the current live values. */
  resetPeak(device?: string): void {
    for (const [name, d] of this.usage) {
      if (device !== undefined && name !== device) continue;
      d.peak = d.live;
      for (const c of MEMORY_CATEGORIES) d.categories[c].peak = d.categories[c].live;
    }
  }

  /** A deep copy of the usage of every device seen so far. */
  snapshot(): Record<string, DeviceUsage> {
    const out: Record<string, DeviceUsage> = {};
    for (const [name, d] of this.usage) out[name] = { live: d.live, peak: d.peak, categories: structuredClone(d.categories) };
    return out;
  }

  largestHolders(device: string, n: number): MemoryHolder[] {
    return [...this.holders].filter((h) => h.device === device).sort((a, b) => b.byteLength - a.byteLength).slice(0, n);
  }

  /** Number of live allocations (all devices); a leak test's second witness besides bytes. */
  get liveCount(): number {
    return this.holders.size;
  }
}
