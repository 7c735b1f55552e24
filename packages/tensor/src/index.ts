export { DSError, DSConfigError, DSShapeError, DSUnsupportedError, DSNativeError, DSOutOfMemoryError, DSDeviceError, isDSError } from './errors.js';
export type { DSErrorOptions, ConfigProblem } from './errors.js';
export { defaultPoolSpinUs, readTensorEnv } from './env.js';
export { parseByteSize, formatByteSize } from './bytes.js';
export type { TensorEnv } from './env.js';
export { loadCpuAddon } from './native/load.js';
export type { CpuAddon, CpuInfo } from './native/load.js';

// dtypes
export { DTYPES, BYTES_PER_ELEMENT, isFloat, f32ToBf16, bf16ToF32, f32ToF16, f16ToF32 } from './dtype.js';
export type { DType, FloatDType } from './dtype.js';

// kernels and backends
export type { KernelTable, HostKernelTable, GemmArgs, AdamWArgs, KArray, FArray, F32, U16, I32, U8, UnaryOp, BinaryOp } from './kernels/table.js';
export { DeviceArray, isDeviceArray, hostOnly, elementKindOf, ELEMENT_BYTES } from './devices/device-array.js';
export type { DeviceAllocation, HostArray, Operand, ElementKind } from './devices/device-array.js';
export type { DeviceBackend } from './devices/types.js';
export { createSimDevice } from './devices/sim.js';
export { createCudaDevice, createCudaKernels } from './devices/cuda.js';
export type { CudaDevice, CudaDeviceOptions, CudaEvent } from './devices/cuda.js';
export { cudaStatus, loadCudaAddon } from './native/load-cuda.js';
export { nvidiaLibraryDirs } from './native/nvidia-libs.js';
export type { NvidiaSearchEnv } from './native/nvidia-libs.js';
export type { CudaStatus, CudaProbe, CudaMemoryStats, CudaAddon } from './native/load-cuda.js';
export { cudaSelfCheck, cudaSelfCheckCases } from './devices/cuda-selfcheck.js';
export type { CudaSelfCheckCase, CudaSelfCheckCaseInfo, CudaSelfCheckOptions, CudaSelfCheckResult, SelfCheckOutput } from './devices/cuda-selfcheck.js';
export { cudaBench } from './devices/cuda-bench.js';
export type { CudaBenchOptions, CudaBenchResult, CudaBenchRow } from './devices/cuda-bench.js';
export type { SimDeviceOptions } from './devices/sim.js';
export { createReferenceKernels } from './reference/index.js';
export { defaultKernels } from './backends/registry.js';
export { createCpuKernels } from './backends/cpu.js';
export type { CpuKernels, CpuIsa } from './backends/cpu.js';

// runtime, memory
export { Runtime, registerDeviceFactory, getRuntime, setRuntime, withRuntime, useKernels, noGrad, enableGrad, isGradEnabled, autocast, withCategory } from './runtime.js';
export type { RuntimeOptions } from './runtime.js';
export { MemoryTracker, MEMORY_CATEGORIES } from './memory/tracker.js';
export type { MemoryCategory, DeviceUsage, CategoryUsage } from './memory/tracker.js';
export { Storage } from './memory/storage.js';
export type { StorageOptions } from './memory/storage.js';
export { tidy, keep, dispose } from './memory/scope.js';

// tensors
export { Tensor, storedBytes, ELEMENT_KIND } from './tensor.js';
export { toDevice, toDeviceRaw, copyInto } from './ops/device.js';
export type { TensorInit, AllocOptions } from './tensor.js';
export { Generator } from './random.js';
export { toHandle, fromHandle } from './dlpack.js';
export type { TensorHandle } from './dlpack.js';
export { empty, zeros, ones, full, fromArray, arange, randn, uniform, randint } from './create.js';
export type { CreateOptions, RandomOptions } from './create.js';

// autograd
export { backward, freeGraph, queueBackwardCallback } from './autograd/engine.js';
export type { BackwardOptions } from './autograd/engine.js';
export { attach, attachMulti, needsGrad, save, saveInput, checkHeld } from './autograd/node.js';
export type { GradNode, BackwardFn, MultiBackwardFn } from './autograd/node.js';

// ops and nn
export * from './ops/index.js';
export * from './nn/index.js';
