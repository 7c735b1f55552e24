// @ds/comm-mpi: the MPI comm backend plugin.
//
//   import { initialize } from '@ds/core';
//   import { mpi } from '@ds/comm-mpi';
//   const { engine } = await initialize({ model, config: { ...config, comm_backend_name: 'mpi' }, plugins: [mpi()] });
export { mpi } from './plugin.js';
export { mpiBackend, startMpi, MpiProcessGroup } from './backends/mpi.js';
export type { MpiBackendOptions } from './backends/mpi.js';
export type { MpiInfo } from './native/load.js';
