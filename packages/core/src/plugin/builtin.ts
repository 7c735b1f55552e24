// Core's own contributions, registered through the same extension points as any plugin's, so that a
// comm backend from @ds/comm-mpi or @ds/comm-nccl is chosen exactly the way `cpu` is.
import { cpuBackend } from '../comm/backends/cpu.js';
import type { Plugin } from './types.js';

export const corePlugin: Plugin = {
  name: 'core',
  package: '@ds/core',
  contributes: {
    commBackends: {
      cpu: ({ env }) =>
        cpuBackend({ chunkBytes: env.commChunkBytes, spin: env.commSpin, shmDir: env.shmDir, transport: env.commTransport, ifAddr: env.commIfAddr, hostId: env.hostId, localRanks: env.dist?.localSize }),
    },
  },
};
