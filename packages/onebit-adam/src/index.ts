// @ds/onebit-adam: DeepSpeed's 1-bit optimizers (runtime/fp16/onebit/: 1-bit Adam, 0/1 Adam,
// 1-bit LAMB) as one optimizer plugin, and their compressed all-reduce as a function of its own.
export { onebitAdam } from './plugin.js';
export { OnebitAdam } from './onebit-adam.js';
export type { OnebitAdamOptions } from './onebit-adam.js';
export { ZeroOneAdam } from './zero-one-adam.js';
export type { ZeroOneAdamOptions } from './zero-one-adam.js';
export { OnebitLamb } from './onebit-lamb.js';
export type { OnebitLambOptions } from './onebit-lamb.js';
export { CompressingSlotOptimizer } from './compressing.js';
export type { CompressingOptimizer, ErrorState, RankExtras } from './compressing.js';
export { OnebitState } from './state.js';
export { checkOnebitParams, ONEBIT_SPECS } from './params.js';
export { CompressedAllReduce, createErrors, paddedSize } from './compressed-allreduce.js';
export type { CompressibleBuffer, CompressibleDtype, CompressionErrors, CompressedStats, CompressedAllReduceOptions } from './compressed-allreduce.js';
export { nativeOnebitKernels } from './native/load.js';
export type { OnebitKernels } from './native/load.js';
export { referenceOnebitKernels } from './reference/kernels.js';
export { referenceCompressedAllReduce, referenceStates } from './reference/compressed-allreduce.js';
export type { ReferenceRankState, ReferenceResult } from './reference/compressed-allreduce.js';
