// GPU memory for this package's tests and benchmarks, and for callers that need a cuda buffer before
// @ds/tensor's cuda device lands: @ds/tensor's own DeviceArray over a cudaMalloc allocation, with
// explicit copies to and from host typed arrays. It is not an allocator for training: tensors get
// their memory from @ds/tensor's cuda device.
import { DSShapeError } from '@ds/core';
import { DeviceArray, ELEMENT_BYTES, elementKindOf, type ElementKind, type HostArray } from '@ds/tensor';

import type { NcclAddon } from './native/load.js';

export class CudaMemory {
  /**
   * Allocations of CUDA device `ordinal`, through the addon's CUDA runtime (loaded by a successful
   * ncclBackend() or ncclStatus() probe).
   */
  constructor(
    private readonly addon: NcclAddon,
    readonly ordinal: number,
  ) {}

  /** `length` elements of `kind` on the GPU; contents undefined until written. */
  alloc<T extends HostArray = HostArray>(kind: ElementKind, length: number): DeviceArray<T> {
    const per = ELEMENT_BYTES[kind];
    if (per === undefined || !Number.isSafeInteger(length) || length < 0) throw new DSShapeError(`CudaMemory.alloc: need a kind of f32, u16, i32 or u8 and a length >= 0 (got ${kind}, ${length})`);
    const byteLength = length * per;
    const address = this.addon.deviceAlloc(byteLength, this.ordinal);
    return new DeviceArray<T>({ device: 'cuda', byteLength, address }, kind, 0, length);
  }

  /** A device copy of `src`. */
  from<T extends HostArray>(src: T): DeviceArray<T> {
    const a = this.alloc<T>(elementKindOf(src), src.length);
    this.upload(a, src);
    return a;
  }

  /** Host -> device: `src` must have exactly the device array's bytes. */
  upload(dst: DeviceArray, src: HostArray): void {
    this.check('upload', dst, src);
    this.addon.copy(dst.address, src, this.ordinal, true);
  }

  /** Device -> host into `dst` (exactly the device array's bytes); returns `dst`. */
  download<T extends HostArray>(src: DeviceArray, dst: T): T {
    this.check('download', src, dst);
    this.addon.copy(src.address, dst, this.ordinal, false);
    return dst;
  }

  /** Frees the allocation under `a` (every window of it becomes invalid). */
  free(a: DeviceArray): void {
    this.addon.deviceFree(a.allocation.address, this.ordinal);
  }

  private check(what: string, a: DeviceArray, host: HostArray): void {
    if (a.device !== 'cuda') throw new DSShapeError(`CudaMemory.${what}: the array lives on '${a.device}', not 'cuda'`);
    if (host.byteLength !== a.byteLength) throw new DSShapeError(`CudaMemory.${what}: the host array has ${host.byteLength} bytes but the device array ${a.byteLength}`);
  }
}
