export { ADAM_K, modelStateBytes, estimateZero2, estimateZero3 } from './estimate.js';
export type { ZeroStage, EstimateRow, EstimateInput } from './estimate.js';
export { zero, createZeroState, checkZeroCompatibility, ZERO_SUPPORTED_OPTIMIZERS } from './plugin.js';
export { zeroOptimizationSchema, zeroConfigOf, ZERO_ALIASES } from './config.js';
export type { ZeroConfig } from './config.js';
export { Stage12State } from './stage12.js';

export { ShardedState } from './shard-state.js';

export { Stage3State, gatheredParameters } from './stage3.js';
export type { GatheredOptions } from './stage3.js';
export { zeroInit, registerExternalParameter } from './zero-init.js';
export type { ZeroInitOptions } from './zero-init.js';
export { consolidateFp32, writeFp32 } from './consolidate.js';
export type { Consolidated, ConsolidateOptions } from './consolidate.js';
