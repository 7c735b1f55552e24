// @ds/core's comm layer: the public door of src/comm.
//
//   const dist = await initDistributed();            // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   await dist.world.allReduce({ dtype: 'f32', array: grads }, { op: 'avg' });
//   const w = dist.world.reduceScatter(out, inp);     // async form: keep the Work, compute, then
//   await w;                                          // await it (or w.waitSync() from a hook)
//   const tp = await dist.newGroup([0, 1]);           // subgroups: members call, others get null
//   const flat = await dist.world.allocRegistered(n * 4);  // zero-copy buffer for flat params/grads
//   await dist.destroy();
export type {
  CommArray,
  CommBuffer,
  AnyCommBuffer,
  CommBackend,
  CommEvent,
  CommObserver,
  CommOpName,
  GroupSpec,
  ObserverOptions,
  OpOptions,
  RecvOptions,
  ProcessGroup,
  ReduceOp,
  ReduceOptions,
  RootOptions,
  Work,
} from './types.js';
export { initDistributed, Distributed } from './init.js';
export { ProcessTopology, buildParallelGroups, AXES } from './topology.js';
export type { Axis, Coords, Degrees, ParallelGroups } from './topology.js';
export { waitSync } from './sync-wait.js';
export { withDeviceStaging } from './staging.js';
// For backends in other packages (@ds/comm-mpi, @ds/comm-nccl): the Work handle, the observer list
// and the argument checks every ProcessGroup shares, so each backend behaves alike on bad input.
export { PromiseWork } from './work.js';
export type { SyncCompletion } from './work.js';
export { Observers } from './observers.js';
export { checkBuffer, checkPair, checkRank, checkReduceOp, checkSameDType, checkTimeout, DTYPE_CODE, OP_CODE, REDUCE_CODE } from './validate.js';
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
export { measure, BENCH_OPS } from './perf.js';
export type { BenchOp, PerfOptions, PerfRow } from './perf.js';
export { HierarchicalProcessGroup } from './backends/hierarchical.js';
export { FakeWorld } from './backends/fake.js';
export type { FakeWorldOptions } from './backends/fake.js';
