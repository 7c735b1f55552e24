// @ds/comm-nccl: the NCCL comm backend plugin.
//
//   import { initialize } from '@ds/core';
//   import { nccl } from '@ds/comm-nccl';
//   const { engine } = await initialize({ model, config, plugins: [nccl()], commBackend: 'nccl' });
export { nccl } from './plugin.js';
export type { NcclPluginOptions } from './plugin.js';
export { ncclBackend, startNccl, NcclProcessGroup } from './backends/nccl.js';
export type { NcclBackendOptions, NcclInfo } from './backends/nccl.js';
export type { NcclBuffer } from './backends/checks.js';
export { ncclStatus } from './status.js';
export type { NcclStatus, StatusOptions } from './status.js';
export { CudaMemory } from './device-memory.js';
export { loadNcclAddon } from './native/load.js';
export type { NcclAddon } from './native/load.js';
export { readNcclEnv } from './env.js';
export type { NcclEnv } from './env.js';
