// The @ds/* plugin packages core knows about, so that a config needing one that is not registered
// fails with the package name and the line that registers it. This is data, not dispatch: the
// engine still asks the registry; the catalogue only writes messages and tells ds-config what to look for.

export interface KnownPlugin {
  /** The plugin's `name` once registered. */
  readonly name: string;
  readonly package: string;
  /** The factory the package exports: `plugins: [zero()]`. */
  readonly factory: string;
  readonly provides: string;
  readonly sections: readonly string[];
  readonly optimizerTypes: readonly string[];
  readonly commBackends: readonly string[];
}

export const KNOWN_PLUGINS: readonly KnownPlugin[] = [
  { name: 'zero', package: '@ds/zero', factory: 'zero', provides: 'ZeRO stages 1-3', sections: ['zero_optimization'], optimizerTypes: [], commBackends: [] },
  {
    name: 'offload-nvme',
    package: '@ds/offload-nvme',
    factory: 'offloadNvme',
    provides: 'optimizer and parameter offload to cpu and NVMe, async I/O',
    sections: ['aio'],
    optimizerTypes: [],
    commBackends: [],
  },
  {
    name: 'onebit-adam',
    package: '@ds/onebit-adam',
    factory: 'onebitAdam',
    provides: '1-bit Adam, 0/1 Adam and 1-bit LAMB',
    sections: [],
    optimizerTypes: ['OneBitAdam', 'ZeroOneAdam', 'OneBitLamb'],
    commBackends: [],
  },
  {
    name: 'sparse-attn',
    package: '@ds/sparse-attn',
    factory: 'sparseAttention',
    provides: 'block-sparse attention',
    sections: ['sparse_attention'],
    optimizerTypes: [],
    commBackends: [],
  },
  { name: 'pipeline', package: '@ds/pipeline', factory: 'pipeline', provides: 'pipeline parallelism', sections: ['pipeline'], optimizerTypes: [], commBackends: [] },
  { name: 'comm-nccl', package: '@ds/comm-nccl', factory: 'nccl', provides: 'the NCCL communication backend', sections: [], optimizerTypes: [], commBackends: ['nccl'] },
  { name: 'comm-mpi', package: '@ds/comm-mpi', factory: 'mpi', provides: 'the MPI communication backend', sections: [], optimizerTypes: [], commBackends: ['mpi'] },
];

export function knownPluginByPackage(pkg: string): KnownPlugin | undefined {
  return KNOWN_PLUGINS.find((p) => p.package === pkg);
}

export function knownPluginForSection(section: string): KnownPlugin | undefined {
  return KNOWN_PLUGINS.find((p) => p.sections.includes(section));
}

export function knownPluginForOptimizer(type: string): KnownPlugin | undefined {
  const t = type.toLowerCase();
  return KNOWN_PLUGINS.find((p) => p.optimizerTypes.some((o) => o.toLowerCase() === t));
}

export function knownPluginForBackend(name: string): KnownPlugin | undefined {
  return KNOWN_PLUGINS.find((p) => p.commBackends.includes(name));
}

/** "pnpm add @ds/zero, then initialize({ ..., plugins: [zero()] })" */
export function registerHint(plugin: KnownPlugin): string {
  return `pnpm add ${plugin.package}, then initialize({ ..., plugins: [${plugin.factory}()] })`;
}
