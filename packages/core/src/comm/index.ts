// @ds/core's comm layer: the public door of src/comm.
export type {
  CommArray,
  CommBuffer,
  CommBackend,
  CommEvent,
  CommObserver,
  CommOpName,
  GroupSpec,
  ObserverOptions,
  OpOptions,
  ProcessGroup,
  ReduceOp,
  ReduceOptions,
  RootOptions,
  Work,
} from './types.js';
export { initDistributed, Distributed } from './init.js';
export type { InitOptions, NewGroupOptions } from './init.js';
export { cpuBackend, CpuProcessGroup } from './backends/cpu.js';
export type { CpuBackendOptions } from './backends/cpu.js';
export type { Store } from './store/store.js';
export { PrefixStore } from './store/store.js';
export { TCPStore } from './store/tcp-store.js';
export type { TCPStoreOptions } from './store/tcp-store.js';
export { referenceReduce } from './reference.js';
export { busFactor, ncclBandwidth, deepspeedBandwidth } from './bandwidth.js';
export { CommsLogger, DS_OP_NAMES, formatMsgSize, trimmedMean } from './logger.js';
export type { CommsLoggerConfig } from './logger.js';
export { measure, parseSize, formatSize, BENCH_OPS } from './perf.js';
export type { BenchOp, PerfOptions, PerfRow } from './perf.js';
