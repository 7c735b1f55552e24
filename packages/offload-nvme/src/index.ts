// @ds/offload-nvme: ZeRO-Offload and ZeRO-Infinity tiers (cpu, nvme), the async I/O engine, ds-io.
export { offloadNvme, createCpuTier, createNvmeTier } from './plugin.js';
export type { OffloadNvmeOptions } from './plugin.js';
export { aioSchema, aioConfigOf, AIO_DEFAULTS } from './aio-config.js';
export type { AioConfig } from './aio-config.js';
export { AioEngine, allocAligned, aioOptionsOf } from './engine.js';
export type { AioOptions, AioFile, IoEngine } from './engine.js';
export { ReferenceIo } from './reference/sync-io.js';
export { DSIOError, isDSIOError } from './errors.js';
export type { IoFailure } from './errors.js';
export { CpuTier, HOST_DEVICE } from './tiers/cpu.js';
export { NvmeTier, freeBytes, memoryFileSystem } from './tiers/nvme.js';
export { findStaleSwapFiles, removeStaleSwapFiles, swapFileName } from './tiers/swap-files.js';
export type { StaleSwap } from './tiers/swap-files.js';
export { measureIo, sweepIo } from './io-bench.js';
export type { IoMeasure, IoMeasureOptions } from './io-bench.js';
