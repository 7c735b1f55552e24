// Shared by the cuda tests: whether the GPU suite can run (and why not), and moving host arrays
// to and from a cuda device so that every cuda kernel can be run on the same inputs as its cpu twin.
import { DeviceArray, elementKindOf, type HostArray } from '../../src/devices/device-array.js';
import { createCudaDevice, type CudaDevice } from '../../src/devices/cuda.js';
import { cudaStatus } from '../../src/native/load-cuda.js';

export const status = cudaStatus();
/** Set when the GPU suite cannot run here; printed by the suite that skips. */
export const skipReason: string | null = status.available ? null : `no usable GPU: ${status.reason}`;

let device: CudaDevice | undefined;
export function cuda(): CudaDevice {
  device ??= createCudaDevice();
  return device;
}

/** A cuda copy of a host array (same element kind and length). */
export function up<T extends HostArray>(host: T): DeviceArray<T> {
  const d = cuda();
  const alloc = d.alloc(Math.max(1, host.byteLength), { uninitialized: true });
  const arr = new DeviceArray<T>(alloc, elementKindOf(host), 0, host.length);
  d.copyFromHost(host, arr);
  return arr;
}

/** The host copy of a cuda array, as a fresh array of the same type as `like`. */
export function down<T extends HostArray>(a: DeviceArray<T>, like: T): T {
  const out = new (like.constructor as new (n: number) => T)(a.length);
  cuda().copyToHost(a, out);
  return out;
}
