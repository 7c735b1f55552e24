// The device contract: what a runtime needs from a device besides its kernel table.
//
// The cpu device is `host`: its memory is ArrayBuffers that JavaScript reads through typed arrays
// (Storage.allocate does that itself). Every other device implements `DeviceBackend`: it allocates
// opaque memory, copies bytes across the host boundary, and runs the kernel table on DeviceArray
// operands. `sim` (devices/sim.ts) does this with native memory executed by the cpu kernels; `cuda`
// does it on a GPU.

import type { KernelTable } from '../kernels/table.js';
import type { DeviceAllocation, DeviceArray, HostArray } from './device-array.js';

export interface DeviceBackend {
  /** The device name tensors carry ('sim', 'cuda'). */
  readonly name: string;
  /** The kernel table; every operand it gets is a DeviceArray of this device. */
  readonly kernels: KernelTable;
  /** `byteLength` bytes of device memory, zero-filled unless `uninitialized`. Throws DSOutOfMemoryError when the device is full. */
  alloc(byteLength: number, opts?: { uninitialized?: boolean }): DeviceAllocation;
  /** Returns an allocation to the device (or its caching allocator). Never called twice for one allocation. */
  free(a: DeviceAllocation): void;
  /** Device -> host: `dst.length` elements of src's kind (src must have at least that many). Synchronous: dst is filled on return. */
  copyToHost(src: DeviceArray, dst: HostArray): void;
  /** Host -> device: src's elements into dst (same element size). dst is written before any later kernel on this device reads it. */
  copyFromHost(src: HostArray, dst: DeviceArray): void;
  /** Device -> device on this device (`n` bytes from src to dst; may overlap only when equal). */
  copy(src: DeviceArray, dst: DeviceArray): void;
  /** Waits until every kernel and copy queued on this device has finished. */
  synchronize(): void;
  /** One line for ds-report: what runs this device (the binary, the GPU, the library versions). */
  describe(): string;
}
