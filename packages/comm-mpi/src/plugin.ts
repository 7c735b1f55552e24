// The @ds/comm-mpi plugin: contributes the `mpi` comm backend, chosen by comm_backend_name "mpi",
// initialize({ commBackend: 'mpi' }) or DS_COMM_BACKEND=mpi.
import type { Plugin } from '@ds/core';

import { mpiBackend } from './backends/mpi.js';

export function mpi(): Plugin {
  return {
    name: 'comm-mpi',
    package: '@ds/comm-mpi',
    contributes: {
      commBackends: {
        mpi: ({ env }) => mpiBackend({ hostId: env.hostId, job: env.dist && { rank: env.dist.rank, worldSize: env.dist.worldSize } }),
      },
    },
  };
}
