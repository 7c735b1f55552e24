// The @ds/comm-nccl plugin: contributes the `nccl` comm backend, chosen by
// initialize({ commBackend: 'nccl' }), DS_COMM_BACKEND=nccl or the optimizer's comm_backend_name "nccl".
import type { Plugin } from '@ds/core';

import { ncclBackend, type NcclBackendOptions } from './backends/nccl.js';

/** Options fixed when the plugin is made; the device defaults to the job's LOCAL_RANK. */
export type NcclPluginOptions = Pick<NcclBackendOptions, 'device' | 'computeStream'>;

export function nccl(opts: NcclPluginOptions = {}): Plugin {
  return {
    name: 'comm-nccl',
    package: '@ds/comm-nccl',
    contributes: {
      commBackends: {
        nccl: ({ env }) => ncclBackend({ ...opts, ...(env.dist ? { localRank: env.dist.localRank } : {}) }),
      },
    },
  };
}
