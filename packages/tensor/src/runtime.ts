// The runtime: one object holding what the tensor layer would otherwise keep in module globals —
// the kernel table of each device, the memory tracker, the scope stack, grad mode and autocast.
//
// A default runtime is created on first use (the one module-level variable we cannot avoid if
// `zeros([2, 3])` is to work without passing a context around). Tests and tools build their own
// (`new Runtime({ kernels: createReferenceKernels() })`) and run code in it with `withRuntime`.

import { defaultKernels } from './backends/registry.js';
import { readTensorEnv } from './env.js';
import { DSError, DSUnsupportedError } from './errors.js';
import type { FloatDType, KernelTable } from './kernels/table.js';
import type { MemoryCategory } from './memory/tracker.js';
import { MemoryTracker } from './memory/tracker.js';
import type { Storage } from './memory/storage.js';
import type { ParameterHook } from './nn/parameter-hook.js';
import type { DeviceBackend } from './devices/types.js';
import { createSimDevice } from './devices/sim.js';
import { createCudaDevice } from './devices/cuda.js';

/**
 * Devices a runtime can create on first use. Nothing is loaded before: the cuda binary is loaded
 * (and test-loaded) by the first runtime.device('cuda'), which takes GPU LOCAL_RANK of the host.
 */
const deviceFactories = new Map<string, () => DeviceBackend>([
  ['sim', () => createSimDevice()],
  ['cuda', () => createCudaDevice({ index: readTensorEnv().localRank })],
]);

/** Makes `device` available to every runtime, created on first use with `make`. */
export function registerDeviceFactory(device: string, make: () => DeviceBackend): void {
  deviceFactories.set(device, make);
}

export interface RuntimeOptions {
  /** Kernel table of the cpu device; default: the native table when it loads, else the reference. */
  kernels?: KernelTable;
  /** Per-device byte budget; default DS_MEMORY_LIMIT (unset: unlimited). */
  memoryLimit?: number;
  /**
   * Float64 check mode, for gradient checks only: 'f32' tensors are backed by Float64Arrays and the
   * kernels must be the reference table, so every op computes in f64. Byte counts double.
   */
  f64Check?: boolean;
  /** Most bytes the CPU buffer cache keeps (memory/cache.ts); default DS_ALLOC_CACHE, 0 turns it off. */
  allocCache?: number;
  /** Fill uninitialized allocations with 0xFF bytes; default DS_POISON_UNINIT. */
  poisonUninit?: boolean;
}

/** A tidy scope: the tensors created while it is the innermost one. */
export interface ScopeFrame {
  readonly tensors: Set<{ dispose(): void }>;
}

export class Runtime {
  readonly tracker: MemoryTracker;
  readonly f64Check: boolean;
  private readonly kernelsByDevice = new Map<string, KernelTable>();
  private readonly backends = new Map<string, DeviceBackend>();
  /** False inside noGrad() and while backward functions run. */
  gradEnabled = true;
  /** The dtype matmul-like ops compute in inside autocast(); null outside. */
  autocastDtype: FloatDType | null = null;
  /** Category given to new storages when set (withCategory); else each creator picks its own. */
  categoryOverride: MemoryCategory | null = null;
  readonly scopes: ScopeFrame[] = [];
  /** Callbacks queued to run when the innermost running backward pass finishes. */
  readonly backwardCallbacks: (() => void)[][] = [];
  /** Active parameter-creation hooks, outermost first (nn/parameter-hook.ts). */
  readonly parameterHooks: ParameterHook[] = [];
  /** Parameters already handed to parameter hooks, so that each is handed over once. */
  readonly announcedParameters = new WeakSet<object>();
  private nextId = 1;
  /** Safety net: a tensor handle garbage-collected without dispose() releases its storage here. */
  readonly finalizer: FinalizationRegistry<Storage>;

  constructor(opts: RuntimeOptions = {}) {
    const env = readTensorEnv();
    this.tracker = new MemoryTracker(opts.memoryLimit ?? env.memoryLimit, {
      cacheLimit: opts.allocCache ?? env.allocCache,
      poisonUninit: opts.poisonUninit ?? env.poisonUninit,
    });
    this.f64Check = opts.f64Check ?? false;
    const kernels = opts.kernels ?? defaultKernels('cpu');
    if (this.f64Check && kernels.name !== 'reference') {
      throw new DSUnsupportedError(`f64Check mode needs the reference kernel table, got '${kernels.name}'`);
    }
    this.kernelsByDevice.set('cpu', kernels);
    const tracker = this.tracker;
    this.finalizer = new FinalizationRegistry((storage: Storage) => {
      if (storage.isFreed) return;
      tracker.gcReclaimed++;
      // Not into the buffer cache: a typed array taken with data() may outlive its tensor handle
      // (the handle was dropped without dispose, the array kept), and must not come to alias a new
      // tensor's bytes. Only an explicit dispose() hands a buffer back for reuse.
      storage.release(false);
    });
  }

  /** The kernel table of a device; a device without a backend fails with one clear sentence. */
  kernels(device: string): KernelTable {
    const k = this.kernelsByDevice.get(device);
    if (k) return k;
    if (device !== 'cpu' && deviceFactories.has(device)) return this.device(device).kernels;
    throw new DSUnsupportedError(
      `device '${device}' has no kernel backend in this runtime (available: ${this.devices.join(', ')}); ` +
        `register one with runtime.useDevice(backend) or runtime.useKernels(table, '${device}')`,
    );
  }

  /**
   * The backend of a non-host device, created on first use ('sim' always; 'cuda' when @ds/tensor's
   * cuda binary loads). Devices that cannot be used here fail with the backend's own one sentence.
   */
  device(device: string): DeviceBackend {
    if (device === 'cpu') throw new DSUnsupportedError(`the cpu device is host memory and has no DeviceBackend; its tensors are read with data()`);
    let b = this.backends.get(device);
    if (b) return b;
    const make = deviceFactories.get(device);
    if (!make) throw new DSUnsupportedError(`unknown device '${device}' (known: cpu, ${[...deviceFactories.keys()].join(', ')})`);
    b = make();
    this.backends.set(device, b);
    return b;
  }

  /** Installs a device backend (a sim device over the reference kernels in tests, say). */
  useDevice(backend: DeviceBackend): void {
    if (backend.name === 'cpu') throw new DSUnsupportedError(`the cpu device is host memory; give it kernels with useKernels(table)`);
    this.backends.set(backend.name, backend);
  }

  /** Runs `device` on another kernel table (the reference table in tests, a cuda table later). */
  useKernels(table: KernelTable, device = 'cpu'): void {
    if (this.f64Check && table.name !== 'reference') throw new DSUnsupportedError(`f64Check mode needs the reference kernel table, got '${table.name}'`);
    this.kernelsByDevice.set(device, table);
  }

  /** The devices this runtime has kernels for or can create. */
  get devices(): string[] {
    return [...new Set([...this.kernelsByDevice.keys(), ...this.backends.keys(), ...deviceFactories.keys()])];
  }

  newId(): number {
    return this.nextId++;
  }
}

let current: Runtime | undefined;

/** The runtime new tensors are created in. */
export function getRuntime(): Runtime {
  if (!current) current = new Runtime();
  return current;
}

/** Makes `rt` the current runtime for the rest of the process (returns the previous one). */
export function setRuntime(rt: Runtime): Runtime | undefined {
  const prev = current;
  current = rt;
  return prev;
}

/** Runs fn with `rt` as the current runtime. */
export function withRuntime<T>(rt: Runtime, fn: () => T): T {
  const prev = current;
  current = rt;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/** Swaps the kernel table of a device in the current runtime. */
export function useKernels(table: KernelTable, device = 'cpu'): void {
  getRuntime().useKernels(table, device);
}

function withFlag<T>(set: (rt: Runtime) => () => void, fn: () => T): T {
  const restore = set(getRuntime());
  try {
    const out = fn();
    if (out instanceof Promise) throw new DSError('noGrad/autocast/withCategory take a synchronous function (compute is synchronous)', { code: 'DS_ASYNC_SCOPE' });
    return out;
  } finally {
    restore();
  }
}

/** Runs fn without recording autograd history. */
export function noGrad<T>(fn: () => T): T {
  return withFlag((rt) => {
    const prev = rt.gradEnabled;
    rt.gradEnabled = false;
    return () => (rt.gradEnabled = prev);
  }, fn);
}

/** Runs fn with autograd recording switched on (inside a backward function, for recomputation). */
export function enableGrad<T>(fn: () => T): T {
  return withFlag((rt) => {
    const prev = rt.gradEnabled;
    rt.gradEnabled = true;
    return () => (rt.gradEnabled = prev);
  }, fn);
}

export function isGradEnabled(): boolean {
  return getRuntime().gradEnabled;
}

/**
 * Mixed precision: inside fn, matmul, linear and attention compute in `dtype` (inputs cast on the
 * way in, gradients cast back), while layernorm, softmax and cross-entropy compute in f32. f32
 * parameters stay f32 and receive f32 gradients, as with torch.autocast.
 */
export function autocast<T>(dtype: FloatDType | null, fn: () => T): T {
  return withFlag((rt) => {
    const prev = rt.autocastDtype;
    rt.autocastDtype = dtype === 'f32' ? null : dtype;
    return () => (rt.autocastDtype = prev);
  }, fn);
}

/** Storages allocated inside fn are counted under `category` (optimizer states, comm buffers...). */
export function withCategory<T>(category: MemoryCategory, fn: () => T): T {
  return withFlag((rt) => {
    const prev = rt.categoryOverride;
    rt.categoryOverride = category;
    return () => (rt.categoryOverride = prev);
  }, fn);
}
