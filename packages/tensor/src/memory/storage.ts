// Storage: the bytes under one or more tensors. Owned storages are allocated here and counted by the
// tracker; wrapped storages view a buffer somebody else owns (a shared-memory segment handed out by
// the comm layer) and are counted too, but never copied.
//
// Lifetime is reference counted by the tensors viewing it: each view retains, each dispose releases,
// and the last release frees (the buffer is dropped and any later access throws).
//
// Only the cpu device's storages hold an ArrayBuffer. A storage on any other device (sim, cuda) holds
// a DeviceAllocation from that device's backend: `buffer` throws for it, and its bytes are reached
// through `operand()` (a DeviceArray for kernels) and the backend's explicit copies.

import { DeviceArray, hostOnly, type DeviceAllocation, type ElementKind, type HostArray } from '../devices/device-array.js';
import type { DeviceBackend } from '../devices/types.js';
import { DSDeviceError, DSError, DSShapeError } from '../errors.js';
import type { MemoryCategory, MemoryHolder, MemoryTracker } from './tracker.js';

/** Fresh zero-promising buffers at least this large are written at allocation (see allocate). */
const FRESH_ZERO_WRITE = 1 << 20;

/** The host typed array of each element kind. */
function hostView(kind: ElementKind, buffer: ArrayBufferLike, byteOffset: number, length: number): HostArray {
  if (kind === 'f32') return new Float32Array(buffer, byteOffset, length);
  if (kind === 'u16') return new Uint16Array(buffer, byteOffset, length);
  if (kind === 'i32') return new Int32Array(buffer, byteOffset, length);
  return new Uint8Array(buffer, byteOffset, length);
}

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
  /** Device memory (non-host storages); null on the host and once freed. */
  private dev: { allocation: DeviceAllocation; backend: DeviceBackend } | null = null;
  private refs = 0;

  private constructor(private readonly tracker: MemoryTracker, buffer: ArrayBufferLike | DeviceBackend, byteOffset: number, byteLength: number, external: boolean, opts: StorageOptions & { allocation?: DeviceAllocation }) {
    this.device = opts.device ?? 'cpu';
    this.category = opts.category ?? 'other';
    this.label = opts.label ?? 'tensor';
    if (opts.allocation) {
      this.dev = { allocation: opts.allocation, backend: buffer as DeviceBackend };
      this.buf = null;
    } else this.buf = buffer as ArrayBufferLike;
    this.byteOffset = byteOffset;
    this.byteLength = byteLength;
    this.external = external;
    tracker.onAlloc(this);
  }

  /** Zero-filled bytes (unless `opts.uninitialized`), after checking the memory budget; reuses a cached buffer when one fits. */
  static allocate(tracker: MemoryTracker, byteLength: number, opts: StorageOptions = {}, backend?: DeviceBackend): Storage {
    const device = opts.device ?? 'cpu';
    tracker.check(device, byteLength, opts.category ?? 'other', opts.label ?? 'tensor');
    if (device !== 'cpu') {
      if (!backend || backend.name !== device) throw new DSDeviceError(`Storage.allocate: device '${device}' needs its DeviceBackend (got ${backend ? `'${backend.name}'` : 'none'}); allocate through Tensor.empty or runtime.device('${device}')`);
      const allocation = backend.alloc(byteLength, { uninitialized: opts.uninitialized });
      return new Storage(tracker, backend, 0, byteLength, false, { ...opts, allocation });
    }
    const reused = device === 'cpu' ? tracker.cache.take(byteLength) : undefined;
    const buf = reused ?? new ArrayBuffer(byteLength);
    // A fresh buffer that promises zeros is written here too (FRESH_ZERO_WRITE): its pages are mapped
    // lazily, and a kernel that reads them first (an optimizer moment, a gradient accumulator) maps the
    // shared zero page and then takes a second, copy-on-write fault with a TLB shootdown on its first
    // write, several times the cost of one write fault on a VM (the first GPT step: 0.4 s of them).
    const zeroFresh = !reused && !opts.uninitialized && byteLength >= FRESH_ZERO_WRITE;
    if (opts.uninitialized ? tracker.poisonUninit : reused || zeroFresh) new Uint8Array(buf).fill(opts.uninitialized ? 0xff : 0);
    return new Storage(tracker, buf, 0, byteLength, false, opts);
  }

  /** Zero-copy view of an existing (possibly shared) buffer. */
  static wrap(tracker: MemoryTracker, buffer: ArrayBufferLike, byteOffset = 0, byteLength = buffer.byteLength - byteOffset, opts: StorageOptions = {}): Storage {
    if (byteOffset < 0 || byteLength < 0 || byteOffset + byteLength > buffer.byteLength) {
      throw new DSShapeError(`Storage.wrap: range [${byteOffset}, ${byteOffset + byteLength}) is outside a buffer of ${buffer.byteLength} bytes; wrap a range inside it`);
    }
    return new Storage(tracker, buffer, byteOffset, byteLength, true, { category: 'communication', ...opts });
  }

  /** The host bytes. Throws on a device whose memory JavaScript cannot read (everything but cpu). */
  get buffer(): ArrayBufferLike {
    if (this.dev) {
      throw new DSDeviceError(
        `storage '${this.label}' lives on device '${this.device}', whose memory JavaScript cannot read; ` +
          `copy it first (tensor.toArray(), tensor.to('cpu')) or run a kernel on it`,
      );
    }
    if (!this.buf) throw this.freedError();
    return this.buf;
  }

  /** True for host (cpu) memory, the only memory JavaScript can read. */
  get isHost(): boolean {
    return this.device === 'cpu';
  }

  /** The device allocation of a non-host storage (for backends and native interop). */
  get allocation(): DeviceAllocation {
    if (this.dev) return this.dev.allocation;
    if (this.isFreed) throw this.freedError();
    throw new DSDeviceError(`storage '${this.label}' is host memory and has no device allocation; use buffer`);
  }

  /** The backend of a non-host storage; null on the host. */
  get backend(): DeviceBackend | null {
    return this.dev?.backend ?? null;
  }

  /**
   * `length` elements of `kind` starting `byteOffset` bytes into this storage (relative to its own
   * start) as a kernel operand: a typed array on the host, a DeviceArray elsewhere.
   */
  operand(kind: ElementKind, byteOffset: number, length: number): HostArray | DeviceArray {
    if (this.dev) return new DeviceArray(this.dev.allocation, kind, byteOffset, length);
    return hostView(kind, this.buffer, this.byteOffset + byteOffset, length);
  }

  /** Host storages only: the same as operand(), typed as a host array. */
  hostArray(kind: ElementKind, byteOffset: number, length: number): HostArray {
    return hostOnly('Storage.hostArray', this.label, this.operand(kind, byteOffset, length));
  }

  get isFreed(): boolean {
    return this.buf === null && this.dev === null;
  }

  private freedError(): DSError {
    return new DSError(`use of freed storage '${this.label}' (${this.byteLength} B): a tensor over it was disposed`, { code: 'DS_USE_AFTER_FREE' });
  }

  get refCount(): number {
    return this.refs;
  }

  retain(): void {
    if (this.isFreed) throw new DSError(`retain of freed storage '${this.label}'`, { code: 'DS_USE_AFTER_FREE' });
    this.refs++;
  }

  /** Drops one reference; the last frees the bytes, into the buffer cache when `reuse` (see runtime.ts's finalizer). */
  release(reuse = true): void {
    if (this.isFreed) return;
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
    if (this.dev) this.dev.backend.free(this.dev.allocation);
    this.buf = null;
    this.dev = null;
    this.tracker.onFree(this);
  }
}
