// A DLPack-like handle for handing tensor memory across addons without copying: the bytes (buffer
// and offset), dtype, shape, element strides, device and stream. A handle does not own memory; the
// tensor it came from must stay alive while the handle is used.

import type { DType } from './dtype.js';
import { DSDeviceError, DSShapeError } from './errors.js';
import type { MemoryCategory } from './memory/tracker.js';
import { getRuntime } from './runtime.js';
import { Storage } from './memory/storage.js';
import { storedBytes, Tensor } from './tensor.js';

export interface TensorHandle {
  /** The host bytes (cpu tensors); null for device memory, which JavaScript cannot read. */
  readonly buffer: ArrayBufferLike | null;
  /** Device tensors: the device pointer of element 0 (DLPack's data + byte_offset); null on the cpu. */
  readonly address: bigint | null;
  /** Byte offset of element 0 of the tensor in `buffer` (0 for device handles: `address` points at it). */
  readonly byteOffset: number;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Strides in elements. */
  readonly strides: readonly number[];
  readonly device: string;
  /** Stream the memory is ordered on (cuda); null on cpu. */
  readonly stream: number | null;
}

export function toHandle(t: Tensor): TensorHandle {
  if (!t.isHost) {
    return {
      buffer: null,
      address: t.storage.allocation.address + BigInt(t.offset * t.bytesPerElement),
      byteOffset: 0,
      dtype: t.dtype,
      shape: [...t.shape],
      strides: [...t.strides],
      device: t.device,
      stream: null,
    };
  }
  return {
    buffer: t.storage.buffer,
    address: null,
    byteOffset: t.storage.byteOffset + t.offset * t.bytesPerElement,
    dtype: t.dtype,
    shape: [...t.shape],
    strides: [...t.strides],
    device: t.device,
    stream: null,
  };
}

/**
 * A tensor over a handle's memory, zero-copy. The bytes are counted as an external storage under
 * `category` (default 'other'), since their owner is elsewhere.
 */
export function fromHandle(h: TensorHandle, opts: { category?: MemoryCategory; label?: string } = {}): Tensor {
  const rt = getRuntime();
  if (h.buffer === null) {
    throw new DSDeviceError(`fromHandle: a handle to ${h.device} memory cannot be wrapped (only host handles can); copy the tensor to 'cpu' on the side that owns it, or allocate on ${h.device} with this runtime`);
  }
  const bpe = storedBytes(rt, h.dtype);
  if (h.byteOffset % bpe !== 0) throw new DSShapeError(`fromHandle: byte offset ${h.byteOffset} is not aligned to ${h.dtype} elements`);
  if (h.shape.length !== h.strides.length) throw new DSShapeError(`fromHandle: ${h.shape.length} dims but ${h.strides.length} strides`);
  let span = 1;
  for (let d = 0; d < h.shape.length; d++) {
    if (h.strides[d]! < 0) throw new DSShapeError('fromHandle: negative strides are not supported');
    span += (h.shape[d]! - 1) * h.strides[d]!;
  }
  if (h.shape.some((s) => s === 0)) span = 0;
  const storage = Storage.wrap(rt.tracker, h.buffer, h.byteOffset, span * bpe, { device: h.device, category: opts.category ?? 'other', label: opts.label ?? 'handle' });
  return new Tensor({ storage, dtype: h.dtype, shape: h.shape, strides: h.strides, offset: 0, runtime: rt });
}
