// Tensor: a typed view {dtype, shape, strides, device, storage, offset} over a Storage.
//
// Views (view/reshape of contiguous data, narrow, transpose, permute, expand) share the storage;
// kernels always see contiguous operands, which ops make with contiguous() where needed. A tensor
// handle holds one reference to its storage; dispose() drops it, and the storage is freed when its
// last view goes. Handles created inside tidy() are disposed when the scope ends.

import { arrayView, BYTES_PER_ELEMENT, bf16ToF32, DTYPES, f16ToF32, isFloat, type DType } from './dtype.js';
import { DSDeviceError, DSError, DSShapeError } from './errors.js';
import type { KArray } from './kernels/table.js';
import type { ElementKind, HostArray } from './devices/device-array.js';
import { Storage, type StorageOptions } from './memory/storage.js';
import type { MemoryCategory } from './memory/tracker.js';
import { getRuntime, type Runtime, type ScopeFrame } from './runtime.js';
import { assertShape, contiguousStrides, fmtShape, numelOf, sameShape, type Shape } from './shape-util.js';
import type { GradNode } from './autograd/node.js';
import { backward as runBackward, type BackwardOptions } from './autograd/engine.js';
import { cast } from './ops/cast.js';
import { toDevice } from './ops/device.js';
import { contiguous, narrow, permute, reshape, transpose, view } from './ops/shape.js';

/** The element kind each dtype is stored as (bf16 and f16 as 16-bit words). */
export const ELEMENT_KIND: Readonly<Record<DType, ElementKind>> = { f32: 'f32', bf16: 'u16', f16: 'u16', i32: 'i32', u8: 'u8' };

export interface TensorInit {
  storage: Storage;
  dtype: DType;
  shape: Shape;
  /** Element offset of the first element in the storage (in elements of dtype). */
  offset?: number;
  strides?: readonly number[];
  runtime?: Runtime;
  /** false: not registered in the enclosing tidy scope (parameters, gradients, saved tensors). */
  track?: boolean;
}

export interface AllocOptions {
  device?: string;
  category?: MemoryCategory;
  label?: string;
  runtime?: Runtime;
  track?: boolean;
  /** The caller writes every element before reading any: skip zeroing a reused buffer (Storage.allocate). */
  uninitialized?: boolean;
}

/** Bytes per element as stored: in f64Check mode an 'f32' element is a Float64. */
export function storedBytes(rt: Runtime, dtype: DType): number {
  return rt.f64Check && dtype === 'f32' ? 8 : BYTES_PER_ELEMENT[dtype];
}

export class Tensor {
  readonly id: number;
  readonly runtime: Runtime;
  storage: Storage;
  offset: number;
  shape: readonly number[];
  strides: readonly number[];
  dtype: DType;
  requiresGrad = false;
  /** The autograd node that produced this tensor; null for leaves and untracked results. */
  gradFn: GradNode | null = null;
  /** Which output of gradFn this tensor is (ops with several outputs, such as split). */
  gradIndex = 0;
  /** Optional name (parameters get theirs from the module tree). */
  name: string | undefined;
  private gradTensor: Tensor | null = null;
  /** True when .grad was allocated by backward (zeroGrad may dispose it); false when set by a caller. */
  ownsGrad = false;
  private disposed = false;
  private scope: ScopeFrame | null = null;
  /** Called with this tensor when its .grad is final for the running backward pass (leaves only). */
  readonly gradReadyHooks: ((t: Tensor) => void)[] = [];

  constructor(init: TensorInit) {
    assertShape('Tensor', init.shape);
    this.runtime = init.runtime ?? getRuntime();
    this.id = this.runtime.newId();
    this.storage = init.storage;
    this.dtype = init.dtype;
    this.shape = [...init.shape];
    this.strides = init.strides ? [...init.strides] : contiguousStrides(init.shape);
    this.offset = init.offset ?? 0;
    this.checkBounds('Tensor');
    this.storage.retain();
    this.runtime.finalizer.register(this, this.storage, this);
    const frame = this.runtime.scopes[this.runtime.scopes.length - 1];
    if (init.track !== false && frame) {
      frame.tensors.add(this);
      this.scope = frame;
    }
  }

  /** Allocates a contiguous tensor, zero-filled unless `opts.uninitialized`. */
  static empty(shape: Shape, dtype: DType, opts: AllocOptions = {}): Tensor {
    assertShape('empty', shape);
    const rt = opts.runtime ?? getRuntime();
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu' && rt.f64Check) throw new DSDeviceError(`f64Check mode runs on the cpu device only; '${device}' was asked for`);
    const storage = Storage.allocate(
      rt.tracker,
      numelOf(shape) * storedBytes(rt, dtype),
      {
        device,
        category: rt.categoryOverride ?? opts.category ?? 'other',
        label: opts.label ?? 'tensor',
        uninitialized: opts.uninitialized,
      },
      device === 'cpu' ? undefined : rt.device(device),
    );
    return new Tensor({ storage, dtype, shape, runtime: rt, track: opts.track ?? true });
  }

  /** A tensor over an existing storage at an element offset: how ZeRO views its flat buffers. */
  static fromStorage(storage: Storage, dtype: DType, shape: Shape, offset = 0, opts: { runtime?: Runtime; track?: boolean } = {}): Tensor {
    return new Tensor({ storage, dtype, shape, offset, runtime: opts.runtime, track: opts.track });
  }

  /** Zero-copy tensor over a caller's buffer (shared memory from the comm layer). */
  static fromBuffer(buffer: ArrayBufferLike, dtype: DType, shape: Shape, opts: StorageOptions & { byteOffset?: number; runtime?: Runtime; track?: boolean } = {}): Tensor {
    const rt = opts.runtime ?? getRuntime();
    const bytes = numelOf(shape) * storedBytes(rt, dtype);
    const storage = Storage.wrap(rt.tracker, buffer, opts.byteOffset ?? 0, bytes, opts);
    return new Tensor({ storage, dtype, shape, runtime: rt, track: opts.track });
  }

  get device(): string {
    return this.storage.device;
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  get bytesPerElement(): number {
    return storedBytes(this.runtime, this.dtype);
  }

  isContiguous(): boolean {
    const want = contiguousStrides(this.shape);
    return this.shape.every((s, d) => s <= 1 || this.strides[d] === want[d]);
  }

  private checkBounds(op: string): void {
    if (this.numel === 0) return;
    let last = this.offset;
    for (let d = 0; d < this.shape.length; d++) last += (this.shape[d]! - 1) * Math.max(0, this.strides[d]!);
    const capacity = Math.floor(this.storage.byteLength / storedBytes(this.runtime, this.dtype));
    if (this.offset < 0 || last >= capacity) {
      throw new DSShapeError(`${op}: a ${this.dtype} view ${fmtShape(this.shape)} at offset ${this.offset} does not fit a storage of ${capacity} elements`);
    }
  }

  private live(op: string): void {
    if (this.disposed) throw new DSError(`${op}: tensor ${fmtShape(this.shape)} ${this.dtype} was disposed`, { code: 'DS_USE_AFTER_FREE' });
  }

  /** True when this tensor's bytes are host memory that JavaScript can read (the cpu device). */
  get isHost(): boolean {
    return this.storage.isHost;
  }

  private kind(): ElementKind {
    return ELEMENT_KIND[this.dtype];
  }

  /** The whole storage as a kernel operand of this dtype (for strided kernels such as gather). */
  storageOperand(): KArray {
    this.live('storageOperand');
    const n = Math.floor(this.storage.byteLength / this.bytesPerElement);
    if (this.isHost) return this.typed(this.storage.byteOffset, n);
    return this.storage.operand(this.kind(), 0, n);
  }

  /**
   * The elements of a contiguous tensor as a kernel operand, zero-copy: a typed array on the cpu, a
   * DeviceArray on any other device. This is what ops and optimizers hand to kernels and collectives.
   */
  operand(): KArray {
    this.live('operand');
    if (!this.isContiguous()) throw new DSShapeError(`operand: tensor ${fmtShape(this.shape)} is not contiguous; call contiguous() first`);
    if (this.isHost) return this.typed(this.storage.byteOffset + this.offset * this.bytesPerElement, this.numel);
    return this.storage.operand(this.kind(), this.offset * this.bytesPerElement, this.numel);
  }

  /** The whole storage as a host array (cpu tensors only; see data()). */
  storageArray(): HostArray {
    this.live('storageArray');
    this.hostOnly('storageArray');
    const n = Math.floor(this.storage.byteLength / this.bytesPerElement);
    return this.typed(this.storage.byteOffset, n);
  }

  /**
   * The elements of a contiguous cpu tensor, zero-copy. Float16/bfloat16 come as raw Uint16 bits.
   * A tensor on another device throws: its memory is not JavaScript's (use toArray() or .to('cpu')).
   */
  data(): HostArray {
    this.live('data');
    this.hostOnly('data');
    if (!this.isContiguous()) throw new DSShapeError(`data: tensor ${fmtShape(this.shape)} is not contiguous; call contiguous() first`);
    return this.typed(this.storage.byteOffset + this.offset * this.bytesPerElement, this.numel);
  }

  private hostOnly(op: string): void {
    if (!this.isHost) {
      throw new DSDeviceError(
        `${op}(): tensor ${fmtShape(this.shape)} ${this.dtype} lives on device '${this.device}', whose memory JavaScript cannot read; ` +
          `use toArray() for the values or .to('cpu') for a host copy`,
      );
    }
  }

  private typed(byteOffset: number, length: number): HostArray {
    if (this.runtime.f64Check && this.dtype === 'f32') return new Float64Array(this.storage.buffer, byteOffset, length) as unknown as Float32Array;
    return arrayView(this.dtype, this.storage.buffer, byteOffset, length);
  }

  /** The elements as plain numbers in row-major order (floats decoded): a copy, from any device. For tests and small reads. */
  toArray(): number[] {
    this.live('toArray');
    if (!this.isHost) {
      const host = this.to('cpu');
      try {
        return host.toArray();
      } finally {
        host.dispose();
      }
    }
    const src = this.storageArray();
    const out = new Array<number>(this.numel);
    const idx = new Array<number>(this.rank).fill(0);
    let at = this.offset;
    for (let j = 0; j < out.length; j++) {
      const raw = src[at]!;
      out[j] = this.dtype === 'bf16' ? bf16ToF32(raw) : this.dtype === 'f16' ? f16ToF32(raw) : raw;
      for (let d = this.rank - 1; d >= 0; d--) {
        idx[d]! += 1;
        at += this.strides[d]!;
        if (idx[d]! < this.shape[d]!) break;
        at -= this.strides[d]! * this.shape[d]!;
        idx[d] = 0;
      }
    }
    return out;
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new DSShapeError(`item: tensor ${fmtShape(this.shape)} has ${this.numel} elements, not 1`);
    return this.toArray()[0]!;
  }

  /** Releases this handle's reference to its storage. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runtime.finalizer.unregister(this);
    this.scope?.tensors.delete(this);
    this.scope = null;
    this.storage.release();
  }

  /** Removes this handle from the enclosing tidy scope: it lives until disposed explicitly. */
  keep(): this {
    this.scope?.tensors.delete(this);
    this.scope = null;
    return this;
  }

  /** Moves this handle into another scope frame (tidy hands results to its parent this way). */
  adoptInto(frame: ScopeFrame | null): void {
    this.scope?.tensors.delete(this);
    this.scope = frame;
    frame?.tensors.add(this);
  }

  get grad(): Tensor | null {
    return this.gradTensor;
  }

  /**
   * Sets or re-points the gradient. ZeRO points it into a flat gradient buffer; backward then
   * accumulates into that view. The tensor given is owned by the caller (it is not disposed here).
   */
  set grad(g: Tensor | null) {
    if (g !== null) {
      // A released (emptied) parameter keeps no shape to check against; ZeRO-3 may still attach grads.
      if (this.numel !== 0 && !sameShape(g.shape, this.shape)) throw new DSShapeError(`grad: gradient ${fmtShape(g.shape)} does not match tensor ${fmtShape(this.shape)}`);
      if (!isFloat(g.dtype)) throw new DSShapeError(`grad: gradient dtype ${g.dtype} is not a float dtype`);
      if (g.device !== this.device) throw new DSShapeError(`grad: gradient on ${g.device}, tensor on ${this.device}`);
    }
    this.gradTensor = g;
    this.ownsGrad = false;
  }

  /**
   * Re-points this tensor at another tensor's bytes (shape, dtype, storage and offset). ZeRO uses it
   * to move a parameter's data into a flat buffer, or to empty it after releasing a gathered copy.
   */
  setData(src: Tensor): void {
    src.live('setData');
    src.storage.retain();
    this.storage.release();
    this.storage = src.storage;
    this.offset = src.offset;
    this.shape = [...src.shape];
    this.strides = [...src.strides];
    this.dtype = src.dtype;
    this.runtime.finalizer.unregister(this);
    this.runtime.finalizer.register(this, this.storage, this);
  }

  /** A new handle on the same bytes without autograd history (it is a leaf). */
  detach(): Tensor {
    this.live('detach');
    return new Tensor({ storage: this.storage, dtype: this.dtype, shape: this.shape, strides: this.strides, offset: this.offset, runtime: this.runtime });
  }

  /** Registers a hook fired once this leaf's .grad is final for a backward pass. Returns its remover. */
  registerGradReadyHook(fn: (t: Tensor) => void): () => void {
    this.gradReadyHooks.push(fn);
    return () => {
      const i = this.gradReadyHooks.indexOf(fn);
      if (i >= 0) this.gradReadyHooks.splice(i, 1);
    };
  }

  // ---- autograd and the view ops as methods (the free functions in ops/ are the same ops) ----

  /** Backpropagates from this tensor into the .grad of every leaf that requires grad. */
  backward(grad?: Tensor, opts?: BackwardOptions): void {
    runBackward(this, grad, opts);
  }

  reshape(shape: Shape): Tensor {
    return reshape(this, shape);
  }

  view(shape: Shape): Tensor {
    return view(this, shape);
  }

  narrow(dim: number, start: number, length: number): Tensor {
    return narrow(this, dim, start, length);
  }

  transpose(dim0: number, dim1: number): Tensor {
    return transpose(this, dim0, dim1);
  }

  permute(dims: readonly number[]): Tensor {
    return permute(this, dims);
  }

  contiguous(): Tensor {
    return contiguous(this);
  }

  /**
   * Cast to a dtype (differentiable between float dtypes), or copy to a device ('cpu', 'sim',
   * 'cuda'; differentiable: the gradient comes back to this tensor's device). This tensor itself
   * when it already has the dtype or lives on the device.
   */
  to(dtypeOrDevice: DType | string): Tensor {
    if (DTYPES.includes(dtypeOrDevice as DType)) return cast(this, dtypeOrDevice as DType);
    return toDevice(this, dtypeOrDevice);
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}, ${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
