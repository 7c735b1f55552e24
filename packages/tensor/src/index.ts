export { DSError, DSShapeError, DSUnsupportedError, DSNativeError, DSOutOfMemoryError, isDSError } from './errors.js';
export type { DSErrorOptions } from './errors.js';
export { readTensorEnv, parseBytes } from './env.js';
export type { TensorEnv } from './env.js';
export { loadCpuAddon } from './native/load.js';
export type { CpuAddon, CpuInfo } from './native/load.js';
