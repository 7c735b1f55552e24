export { DSError, DSShapeError, DSUnsupportedError, DSNativeError, DSOutOfMemoryError, isDSError } from './errors.js';
export type { DSErrorOptions } from './errors.js';
export { readTensorEnv, parseBytes } from './env.js';
export type { TensorEnv } from './env.js';
export { loadCpuAddon } from './native/load.js';
export type { CpuAddon, CpuInfo } from './native/load.js';
export { DTYPES, BYTES_PER_ELEMENT, isFloat, assertDType, arrayView, f32ToBf16, bf16ToF32, f32ToF16, f16ToF32, readFloat, writeFloat } from './dtype.js';
export type { DType, FloatDType, ArrayFor } from './dtype.js';
export type { KernelTable, GemmArgs, AdamWArgs, KArray, FArray, UnaryOp, BinaryOp } from './kernels/table.js';
