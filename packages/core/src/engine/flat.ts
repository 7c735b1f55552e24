// Flat buffers: every parameter (and its gradient) becomes a view of one contiguous buffer, so
// optimizers, reductions and checkpoints work on a few large arrays instead of many small ones.
import { BYTES_PER_ELEMENT, DSShapeError, ELEMENT_KIND, Storage, Tensor, type DType, type FArray, type KernelTable, type MemoryCategory, type Runtime } from '@ds/tensor';

export interface FlatLayout {
  /** Element offset of each parameter in the flat buffer (same order as the params given). */
  offsets: number[];
  /** Element count of each parameter. */
  sizes: number[];
  /** Total elements. */
  numel: number;
}

/**
 * Lays parameters out back to front: backward produces gradients roughly from the last layer to the
 * first, so a reduction bucket that fills first is a contiguous range at the start of the buffer.
 */
export function reverseLayout(params: readonly Tensor[]): FlatLayout {
  const offsets = new Array<number>(params.length);
  const sizes = params.map((p) => p.numel);
  let at = 0;
  for (let i = params.length - 1; i >= 0; i--) {
    offsets[i] = at;
    at += sizes[i]!;
  }
  return { offsets, sizes, numel: at };
}

/** A flat buffer as a storage plus an element array over it. */
export interface FlatBuffer {
  storage: Storage;
  dtype: DType;
  numel: number;
}

/**
 * A flat buffer on `device` (default cpu). `buffer` (a registered shared-memory region from the
 * comm layer) is host memory and only for cpu buffers.
 */
export function allocateFlat(runtime: Runtime, dtype: DType, numel: number, category: MemoryCategory, label: string, buffer?: ArrayBuffer, device = 'cpu'): FlatBuffer {
  const bytes = numel * BYTES_PER_ELEMENT[dtype];
  if (buffer && device !== 'cpu') throw new DSShapeError(`allocateFlat: a host buffer cannot back a flat buffer on '${device}'`);
  const storage = buffer
    ? Storage.wrap(runtime.tracker, buffer, 0, bytes, { category, label })
    : Storage.allocate(runtime.tracker, bytes, { category, label, device }, device === 'cpu' ? undefined : runtime.device(device));
  storage.retain();
  return { storage, dtype, numel };
}

/**
 * The elements [start, start + n) of a flat buffer as a kernel operand (bf16/f16 as 16-bit words):
 * a typed array on the cpu, a DeviceArray on other devices.
 */
export function flatArray(flat: FlatBuffer, start = 0, n = flat.numel - start): FArray {
  return flat.storage.operand(ELEMENT_KIND[flat.dtype], start * BYTES_PER_ELEMENT[flat.dtype], n) as FArray;
}

/** A tensor view of `shape` at element `offset` of a flat buffer. */
export function flatView(runtime: Runtime, flat: FlatBuffer, offset: number, shape: readonly number[]): Tensor {
  return Tensor.fromStorage(flat.storage, flat.dtype, shape, offset, { runtime, track: false });
}

/**
 * Moves each parameter's values into the flat buffer (cast to its dtype) and re-points the
 * parameter at its view. The parameter's old storage is released.
 */
export function adoptParameters(runtime: Runtime, kernels: KernelTable, params: readonly Tensor[], layout: FlatLayout, flat: FlatBuffer): void {
  params.forEach((p, i) => {
    const view = flatView(runtime, flat, layout.offsets[i]!, p.shape);
    const src = p.isContiguous() ? p : null;
    if (!src) throw new DSShapeError(`parameter ${p.name ?? i} is not contiguous; parameters must own contiguous storage (register a fresh tensor, not a view)`);
    if (p.device !== flat.storage.device) throw new DSShapeError(`parameter ${p.name ?? i} is on '${p.device}' but the flat buffer is on '${flat.storage.device}'; every parameter must be on the engine's device`);
    kernels.cast(p.dtype, p.operand(), flat.dtype, view.operand(), p.numel);
    p.setData(view);
    view.dispose();
  });
}

/** Points each parameter's .grad at its slice of a flat gradient buffer (backward accumulates there). */
export function attachGradients(runtime: Runtime, params: readonly Tensor[], layout: FlatLayout, grads: FlatBuffer): Tensor[] {
  return params.map((p, i) => {
    const g = flatView(runtime, grads, layout.offsets[i]!, p.shape);
    p.grad = g;
    return g;
  });
}

export function releaseFlat(flat: FlatBuffer): void {
  flat.storage.release();
}
