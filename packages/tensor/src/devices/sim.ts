// The `sim` device: memory JavaScript cannot read, executed by the cpu kernels.
//
// It exists to prove on a machine without a GPU that no code path touches device bytes from
// JavaScript. Its memory is native (the cpu addon's 64-byte aligned blocks, outside the JS heap),
// handed out as DeviceAllocations whose bytes only this module can reach: the buffers sit in a
// module-private WeakMap, so `data()`, `storage.buffer` and every typed view of a sim tensor throw,
// exactly as they would for cuda. Kernels run by unwrapping each DeviceArray operand into a view of
// its block and calling the cpu table; a host typed array handed to a sim kernel is an error (the
// code that did it would read the wrong memory on a GPU). Copies across the boundary are explicit.
//
// Differences from a real accelerator, deliberately kept small: kernels run synchronously, so
// synchronize() has nothing to wait for; freed blocks return to the OS when the garbage collector
// drops their external buffer (the memory tracker counts them free at once, as a caching allocator
// would).

import { DSDeviceError, DSShapeError } from '../errors.js';
import type { KernelTable } from '../kernels/table.js';
import { nativeOrReference } from '../backends/registry.js';
import { createCpuKernels } from '../backends/cpu.js';
import { loadCpuAddon } from '../native/load.js';
import { DeviceArray, elementKindOf, type DeviceAllocation, type HostArray } from './device-array.js';
import type { DeviceBackend } from './types.js';

/** The bytes of each live sim allocation; nothing outside this module can reach them. */
const blocks = new WeakMap<DeviceAllocation, ArrayBuffer>();

function block(a: DeviceAllocation, op: string): ArrayBuffer {
  const b = blocks.get(a);
  if (!b) throw new DSDeviceError(`${op}: a ${a.byteLength}-byte allocation on '${a.device}' is not live sim memory (freed, or from another device)`);
  return b;
}

function view(d: DeviceArray, op: string): HostArray {
  const b = block(d.allocation, op);
  switch (d.kind) {
    case 'f32':
      return new Float32Array(b, d.byteOffset, d.length);
    case 'u16':
      return new Uint16Array(b, d.byteOffset, d.length);
    case 'i32':
      return new Int32Array(b, d.byteOffset, d.length);
    default:
      return new Uint8Array(b, d.byteOffset, d.length);
  }
}

/** Maps one kernel argument: DeviceArrays of sim become views of their block; host arrays are refused. */
function unwrap(op: string, where: string, v: unknown): unknown {
  if (v instanceof DeviceArray) {
    if (v.device !== 'sim') throw new DSDeviceError(`${op}: ${where} is on device '${v.device}', but this is the sim kernel table`);
    return view(v, op);
  }
  if (ArrayBuffer.isView(v)) {
    throw new DSDeviceError(
      `${op}: ${where} is host memory (a ${v.constructor.name}) passed to a sim kernel; every operand of a sim kernel must be sim memory ` +
        `(tensor.operand() of a sim tensor): copy host data over with tensor.to('sim') or Tensor.fromArray(..., { device: 'sim' })`,
    );
  }
  // Argument objects (gemm, adamw) carry their operands as fields; shapes and strides are plain number arrays.
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = unwrap(op, `${where}.${k}`, x);
    return out;
  }
  return v;
}

/** The sim kernel table: the host table run on views of sim blocks. */
function simKernels(host: KernelTable): KernelTable {
  const table: Record<string, unknown> = { name: 'sim' };
  for (const key of Object.keys(host) as (keyof KernelTable)[]) {
    const fn = host[key];
    if (key === 'name' || typeof fn !== 'function') continue;
    table[key] = (...args: unknown[]) => (fn as (...a: unknown[]) => unknown).apply(host, args.map((a, i) => unwrap(`sim ${String(key)}`, `argument ${i}`, a)));
  }
  return table as unknown as KernelTable;
}

export interface SimDeviceOptions {
  /** The table that executes sim kernels (default: the native cpu table, else the reference one). */
  hostKernels?: KernelTable;
}

/** Creates a sim device. Each runtime gets its own (runtime.device('sim') makes it on first use). */
export function createSimDevice(opts: SimDeviceOptions = {}): DeviceBackend {
  const hostKernels = opts.hostKernels ?? nativeOrReference(createCpuKernels);
  let addon: ReturnType<typeof loadCpuAddon> | null = null;
  try {
    addon = loadCpuAddon();
  } catch {
    // Without the addon the blocks are JS-heap ArrayBuffers: still private to this module.
  }
  const check = (a: DeviceArray, op: string, name: string) => {
    if (!(a instanceof DeviceArray) || a.device !== 'sim') throw new DSDeviceError(`${op}: ${name} must be a sim DeviceArray, got ${a instanceof DeviceArray ? `one on '${a.device}'` : typeof a}`);
  };
  return {
    name: 'sim',
    kernels: simKernels(hostKernels),
    alloc(byteLength) {
      if (!Number.isSafeInteger(byteLength) || byteLength < 0) throw new DSShapeError(`sim alloc: byteLength must be a non-negative integer, got ${byteLength}`);
      // Fresh blocks are zeroed (native ones by the addon); there is no cache, so `uninitialized` changes nothing.
      const made = addon ? addon.nativeAlloc(byteLength) : { buffer: new ArrayBuffer(byteLength), address: 0n };
      const allocation: DeviceAllocation = Object.freeze({ device: 'sim', byteLength, address: made.address });
      blocks.set(allocation, made.buffer);
      return allocation;
    },
    free(a) {
      if (!blocks.delete(a)) throw new DSDeviceError(`sim free: a ${a.byteLength}-byte allocation is not live sim memory (freed twice?)`);
    },
    copyToHost(src, dst) {
      check(src, 'sim copyToHost', 'src');
      if (elementKindOf(dst) !== src.kind || dst.length > src.length) throw new DSShapeError(`sim copyToHost: ${dst.length} ${elementKindOf(dst)} elements do not fit from ${src}`);
      dst.set(view(src, 'sim copyToHost').subarray(0, dst.length) as never);
    },
    copyFromHost(src, dst) {
      check(dst, 'sim copyFromHost', 'dst');
      if (src.BYTES_PER_ELEMENT !== dst.BYTES_PER_ELEMENT || src.length > dst.length) throw new DSShapeError(`sim copyFromHost: ${src.length} elements of ${src.BYTES_PER_ELEMENT} bytes do not fit ${dst}`);
      new Uint8Array(block(dst.allocation, 'sim copyFromHost'), dst.byteOffset, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    },
    copy(src, dst) {
      check(src, 'sim copy', 'src');
      check(dst, 'sim copy', 'dst');
      if (src.byteLength > dst.byteLength) throw new DSShapeError(`sim copy: ${src} does not fit ${dst}`);
      const s = new Uint8Array(block(src.allocation, 'sim copy'), src.byteOffset, src.byteLength);
      new Uint8Array(block(dst.allocation, 'sim copy'), dst.byteOffset, src.byteLength).set(s);
    },
    synchronize() {},
    describe() {
      return `sim: native memory opaque to JavaScript, run by the ${hostKernels.name} kernels`;
    },
  };
}
