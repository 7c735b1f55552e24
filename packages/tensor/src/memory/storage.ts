// Storage: the bytes under one or more tensors. Owned storages are allocated here and counted by the
// tracker; wrapped storages view a buffer somebody else owns (a shared-memory segment handed out by
// the comm layer) and are counted too, but never copied.
//
// Lifetime is reference counted by the tensors viewing it: each view retains, each dispose releases,
// and the last release frees (the buffer is dropped and any later access throws).

import { DSError, DSShapeError } from '../errors.js';
import type { MemoryCategory, MemoryHolder, MemoryTracker } from './tracker.js';

export interface StorageOptions {
  device?: string;
  category?: MemoryCategory;
  /** Shown by out-of-memory errors among the largest holders. */
  label?: string;
  /**
   * The caller overwrites every byte before reading any (a kernel's output): a buffer reused from
   * the cache keeps its old bytes instead of being zeroed (0xFF under DS_POISON_UNINIT).
   */
  uninitialized?: boolean;
}

export class Storage implements MemoryHolder {
  readonly device: string;
  readonly byteLength: number;
  category: MemoryCategory;
  label: string;
  /** True when this storage wraps a caller's buffer instead of owning one. */
  readonly external: boolean;
  readonly byteOffset: number;
  private buf: ArrayBufferLike | null;
  private refs = 0;

  private constructor(private readonly tracker: MemoryTracker, buffer: ArrayBufferLike, byteOffset: number, byteLength: number, external: boolean, opts: StorageOptions) {
    this.device = opts.device ?? 'cpu';
    this.category = opts.category ?? 'other';
    this.label = opts.label ?? 'tensor';
    this.buf = buffer;
    this.byteOffset = byteOffset;
    this.byteLength = byteLength;
    this.external = external;
    tracker.onAlloc(this);
  }

  /** Zero-filled bytes (unless `opts.uninitialized`), after checking the memory budget; reuses a cached buffer when one fits. */
  static allocate(tracker: MemoryTracker, byteLength: number, opts: StorageOptions = {}): Storage {
    const device = opts.device ?? 'cpu';
    tracker.check(device, byteLength, opts.category ?? 'other', opts.label ?? 'tensor');
    const reused = device === 'cpu' ? tracker.cache.take(byteLength) : undefined;
    const buf = reused ?? new ArrayBuffer(byteLength);
    if (opts.uninitialized ? tracker.poisonUninit : reused) new Uint8Array(buf).fill(opts.uninitialized ? 0xff : 0);
    return new Storage(tracker, buf, 0, byteLength, false, opts);
  }

  /** Zero-copy view of an existing (possibly shared) buffer. */
  static wrap(tracker: MemoryTracker, buffer: ArrayBufferLike, byteOffset = 0, byteLength = buffer.byteLength - byteOffset, opts: StorageOptions = {}): Storage {
    if (byteOffset < 0 || byteLength < 0 || byteOffset + byteLength > buffer.byteLength) {
      throw new DSShapeError(`Storage.wrap: range [${byteOffset}, ${byteOffset + byteLength}) is outside a buffer of ${buffer.byteLength} bytes; wrap a range inside it`);
    }
    return new Storage(tracker, buffer, byteOffset, byteLength, true, { category: 'communication', ...opts });
  }

  get buffer(): ArrayBufferLike {
    if (!this.buf) throw new DSError(`use of freed storage '${this.label}' (${this.byteLength} B): a tensor over it was disposed`, { code: 'DS_USE_AFTER_FREE' });
    return this.buf;
  }

  get isFreed(): boolean {
    return this.buf === null;
  }

  get refCount(): number {
    return this.refs;
  }

  retain(): void {
    if (!this.buf) throw new DSError(`retain of freed storage '${this.label}'`, { code: 'DS_USE_AFTER_FREE' });
    this.refs++;
  }

  /** Drops one reference; the last frees the bytes, into the buffer cache when `reuse` (see runtime.ts's finalizer). */
  release(reuse = true): void {
    if (!this.buf) return;
    this.refs--;
    if (this.refs <= 0) this.free(reuse);
  }

  setCategory(category: MemoryCategory): void {
    const from = this.category;
    this.category = category;
    this.tracker.recategorize(this, from);
  }

  private free(reuse: boolean): void {
    // An owned CPU buffer goes back to the cache (a wrapped one belongs to somebody else).
    if (reuse && !this.external && this.device === 'cpu' && this.buf instanceof ArrayBuffer) this.tracker.cache.give(this.buf);
    this.buf = null;
    this.tracker.onFree(this);
  }
}
