// Device memory as seen from TypeScript: an opaque allocation, and a window of its elements that
// kernels take as an operand.
//
// Only the cpu device's memory is visible to JavaScript (typed arrays). Every other device (`sim`,
// `cuda`) hands out `DeviceAllocation`s whose bytes JavaScript cannot index: a `DeviceArray` has a
// length, an element type and `subarray()` (so code that slices flat buffers reads the same on
// every device), but no `[i]`, no `set()` and no `buffer`. Bytes move between devices only through
// the device's explicit copies (DeviceBackend.copyToHost / copyFromHost / copy), and are changed
// only by kernels. This is what lets the `sim` device prove in CI that no code path reads device
// bytes from JavaScript: with sim, there is nothing to read.

import { DSShapeError } from '../errors.js';

/** The element arrays of host (cpu) memory: f32 -> Float32Array, bf16/f16 -> Uint16Array (bits), i32, u8. */
export type HostArray = Float32Array | Uint16Array | Int32Array | Uint8Array;

/** The element kind of an array: what its typed-array twin on the host would be. */
export type ElementKind = 'f32' | 'u16' | 'i32' | 'u8';

export const ELEMENT_BYTES: Readonly<Record<ElementKind, number>> = { f32: 4, u16: 2, i32: 4, u8: 1 };

/** The element kind a host array holds. */
export function elementKindOf(a: HostArray): ElementKind {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Uint16Array) return 'u16';
  if (a instanceof Int32Array) return 'i32';
  return 'u8';
}

/**
 * One allocation in a device's memory. `address` is the device pointer for native interop (what a
 * DLPack handle's data field would carry: a cuda device pointer, or the native address of sim memory);
 * JavaScript never dereferences it. Allocations are made and freed by the device's backend.
 */
export interface DeviceAllocation {
  readonly device: string;
  readonly byteLength: number;
  readonly address: bigint;
}

/**
 * A window of `length` elements of kind `kind` starting `byteOffset` bytes into a device allocation.
 * The type parameter names the host array it stands for, so kernel signatures say the same thing
 * for both (`Float32Array | DeviceArray<Float32Array>`).
 */
export class DeviceArray<T extends HostArray = HostArray> {
  /** Never set: carries T for the type checker only. */
  declare readonly __host?: T;
  readonly BYTES_PER_ELEMENT: number;

  constructor(
    readonly allocation: DeviceAllocation,
    readonly kind: ElementKind,
    readonly byteOffset: number,
    readonly length: number,
  ) {
    this.BYTES_PER_ELEMENT = ELEMENT_BYTES[kind];
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || !Number.isSafeInteger(length) || length < 0 || byteOffset + length * this.BYTES_PER_ELEMENT > allocation.byteLength) {
      throw new DSShapeError(
        `DeviceArray: ${length} ${kind} elements at byte ${byteOffset} do not fit a ${allocation.byteLength}-byte allocation on ${allocation.device}`,
      );
    }
  }

  get device(): string {
    return this.allocation.device;
  }

  get byteLength(): number {
    return this.length * this.BYTES_PER_ELEMENT;
  }

  /** The device pointer of element 0 (for native interop only). */
  get address(): bigint {
    return this.allocation.address + BigInt(this.byteOffset);
  }

  /** Elements [begin, end) as a new window, with typed-array semantics for negative and missing bounds. */
  subarray(begin = 0, end = this.length): DeviceArray<T> {
    const clamp = (i: number) => (i < 0 ? Math.max(0, this.length + i) : Math.min(i, this.length));
    const b = clamp(Math.trunc(begin));
    const e = Math.max(b, clamp(Math.trunc(end)));
    return new DeviceArray<T>(this.allocation, this.kind, this.byteOffset + b * this.BYTES_PER_ELEMENT, e - b);
  }

  /** The same bytes as another element kind (bf16 bits as u16 and back, u8 views for copies). */
  reinterpret<U extends HostArray>(kind: ElementKind): DeviceArray<U> {
    const bytes = this.byteLength;
    const per = ELEMENT_BYTES[kind];
    if (bytes % per !== 0 || this.byteOffset % per !== 0) throw new DSShapeError(`DeviceArray.reinterpret: ${bytes} bytes at ${this.byteOffset} are not whole ${kind} elements`);
    return new DeviceArray<U>(this.allocation, kind, this.byteOffset, bytes / per);
  }

  toString(): string {
    return `DeviceArray(${this.length} ${this.kind} on ${this.device})`;
  }
}

/** A kernel operand: host memory as a typed array, or device memory as a DeviceArray of the same element type. */
export type Operand<T extends HostArray = HostArray> = T | DeviceArray<T>;

export function isDeviceArray(a: unknown): a is DeviceArray {
  return a instanceof DeviceArray;
}

/** The host array itself; a DeviceArray fails naming the op and the operand's device. */
export function hostOnly<T extends HostArray>(op: string, name: string, a: Operand<T>): T {
  if (a instanceof DeviceArray) {
    throw new DSShapeError(`${op}: ${name} lives on device '${a.device}', but this kernel table runs on host memory; run the op on the tensor's own device, or copy it with .to('cpu')`);
  }
  return a;
}
