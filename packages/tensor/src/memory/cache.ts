// A caching allocator for CPU storages: freed buffers are kept, keyed by exact byte length, and
// handed to the next allocation of the same size instead of a fresh ArrayBuffer.
//
// Why: a fresh ArrayBuffer is zero-filled memory the kernel has never mapped, so the first write to
// each page of it faults. On the VMs we run on a fault costs several microseconds, and a training
// step allocates the same few hundred megabytes of activations and gradients every time: measured on
// the reference GPT (d 256, batch 8 x 256), 40% of a step went to faulting in fresh output buffers.
// Training repeats shapes exactly from step to step, so exact-size reuse hits almost every time.
// This is what PyTorch's CUDA caching allocator does for the same reason (cudaMalloc is slow); on
// the CPU PyTorch relies on malloc's free lists, which V8 does not give us for large buffers.
//
// Rules:
// - Only buffers of at least MIN_CACHED_BYTES are kept (small ones are cheap to allocate).
// - The cache holds at most `limit` bytes (DS_ALLOC_CACHE, default a quarter of physical memory,
//   0 turns caching off); past it the oldest cached buffers are dropped first.
// - Cached bytes are not live: the tracker's live and peak figures count tensors only. Under
//   DS_MEMORY_LIMIT the cache is trimmed so that live + cached stays within the limit.
// - A reused buffer holds the bytes of whatever used it last. Allocations that promise zeros zero it;
//   `uninitialized` ones (outputs a kernel overwrites entirely) do not. DS_POISON_UNINIT=1 fills those
//   with 0xFF bytes (NaN in every float dtype) so a kernel that leaves part of its output unwritten
//   shows up as NaN in tests; the test suites run with it on.
// - As with any caching allocator, a typed array taken from a tensor's data() must not be used after
//   that tensor is disposed: its bytes may by then belong to another tensor. A storage that garbage
//   collection reclaims (its tensors were never disposed) is not cached, since a data() array taken
//   from it may still be in use.

/** Buffers below this size are left to V8's allocator. */
export const MIN_CACHED_BYTES = 64 * 1024;

export interface CacheStats {
  /** Bytes held in the cache now (not live: no tensor uses them). */
  cachedBytes: number;
  /** Buffers held in the cache now. */
  cachedBuffers: number;
  /** Allocations served from the cache. */
  hits: number;
  /** Cacheable allocations that found no buffer of their size. */
  misses: number;
  /** Buffers dropped to respect the cache limit or DS_MEMORY_LIMIT. */
  evictions: number;
  /** The most bytes the cache may hold. */
  limit: number;
}

export class BufferCache {
  private readonly bySize = new Map<number, ArrayBuffer[]>();
  /** Every cached buffer in the order it was cached: eviction drops from the front. */
  private readonly order = new Set<ArrayBuffer>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(public limit: number) {}

  get cachedBytes(): number {
    return this.bytes;
  }

  /** A cached buffer of exactly `byteLength` bytes (its old contents kept), or undefined. */
  take(byteLength: number): ArrayBuffer | undefined {
    if (byteLength < MIN_CACHED_BYTES || this.limit === 0) return undefined;
    const stack = this.bySize.get(byteLength);
    const buf = stack?.pop();
    if (!buf) {
      this.misses++;
      return undefined;
    }
    if (stack!.length === 0) this.bySize.delete(byteLength);
    this.order.delete(buf);
    this.bytes -= byteLength;
    this.hits++;
    return buf;
  }

  /** Keeps a freed buffer for reuse when it qualifies; returns whether it was kept. */
  give(buf: ArrayBuffer): boolean {
    const n = buf.byteLength;  // 0 once detached (transferred away): such a buffer is not kept
    if (n < MIN_CACHED_BYTES || n > this.limit) return false;
    this.trim(this.limit - n);
    let stack = this.bySize.get(n);
    if (!stack) this.bySize.set(n, (stack = []));
    stack.push(buf);
    this.order.add(buf);
    this.bytes += n;
    return true;
  }

  /** Drops the oldest cached buffers until at most `maxBytes` remain. */
  trim(maxBytes: number): void {
    for (const buf of this.order) {
      if (this.bytes <= maxBytes) return;
      const n = buf.byteLength;
      const stack = this.bySize.get(n)!;
      stack.splice(stack.indexOf(buf), 1);
      if (stack.length === 0) this.bySize.delete(n);
      this.order.delete(buf);
      this.bytes -= n;
      this.evictions++;
    }
  }

  /** Drops every cached buffer (the memory returns to V8 at its next garbage collection). */
  clear(): void {
    this.trim(0);
  }

  stats(): CacheStats {
    return { cachedBytes: this.bytes, cachedBuffers: this.order.size, hits: this.hits, misses: this.misses, evictions: this.evictions, limit: this.limit };
  }
}
