// Which plugin packages a config needs. A section a plugin owns is needed when it would make
// DeepSpeed act (zero_optimization with stage > 0, an offload device, a sparse_attention or pipeline
// section, a plugin optimizer type); a section that is present but off needs nothing.
import { KNOWN_PLUGINS, knownPluginByPackage, knownPluginForOptimizer, registerHint, type KnownPlugin } from '../plugin/catalogue.js';
import type { Registry } from '../plugin/registry.js';
import { show } from './problems.js';
import type { ConfigObject } from './read.js';

export interface PluginNeed {
  /** The key path that needs the plugin, e.g. "zero_optimization.stage". */
  path: string;
  value: unknown;
  package: string;
  factory: string;
  /** True when the registry given has this package's plugin, or another plugin contributing the same thing. */
  registered: boolean;
}

interface Rule {
  readonly package: string;
  /** Returns [path, value] when the config needs the package. */
  readonly needs: (raw: ConfigObject) => [string, unknown] | undefined;
  /**
   * Whether some registered plugin provides what is needed, by what it contributes rather than by
   * its name, so that a third-party plugin filling the same role is accepted.
   */
  readonly providedBy: (registry: Registry, value: unknown) => boolean;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

const offloadDevice = (key: string) => (raw: ConfigObject): [string, unknown] | undefined => {
  const device = obj(obj(raw.zero_optimization)?.[key])?.device;
  return device === 'cpu' || device === 'nvme' ? [`zero_optimization.${key}.device`, device] : undefined;
};

const presentSection = (key: string) => (raw: ConfigObject): [string, unknown] | undefined =>
  raw[key] !== undefined && raw[key] !== null ? [key, raw[key]] : undefined;

const ownsSection = (key: string) => (registry: Registry) => registry.configSection(key) !== undefined;
const hasOffloadTier = (registry: Registry, device: unknown) => typeof device === 'string' && registry.get('offloadTiers', device) !== undefined;

const RULES: readonly Rule[] = [
  {
    package: '@ds/zero',
    needs: (raw) => {
      const stage = obj(raw.zero_optimization)?.stage;
      return stage !== undefined && stage !== 0 ? ['zero_optimization.stage', stage] : undefined;
    },
    providedBy: ownsSection('zero_optimization'),
  },
  { package: '@ds/offload-nvme', needs: offloadDevice('offload_optimizer'), providedBy: hasOffloadTier },
  { package: '@ds/offload-nvme', needs: offloadDevice('offload_param'), providedBy: hasOffloadTier },
  { package: '@ds/offload-nvme', needs: presentSection('aio'), providedBy: ownsSection('aio') },
  { package: '@ds/sparse-attn', needs: presentSection('sparse_attention'), providedBy: ownsSection('sparse_attention') },
  { package: '@ds/pipeline', needs: presentSection('pipeline'), providedBy: ownsSection('pipeline') },
  {
    package: '@ds/onebit-adam',
    needs: (raw) => {
      const type = obj(raw.optimizer)?.type;
      return typeof type === 'string' && knownPluginForOptimizer(type)?.package === '@ds/onebit-adam' ? ['optimizer.type', type] : undefined;
    },
    providedBy: (registry, type) => typeof type === 'string' && registry.optimizer(type) !== undefined,
  },
];

export function findPluginNeeds(raw: ConfigObject, registry?: Registry): PluginNeed[] {
  const needs: PluginNeed[] = [];
  for (const rule of RULES) {
    const hit = rule.needs(raw);
    if (!hit) continue;
    const known = knownPluginByPackage(rule.package)!;
    const registered = registry !== undefined && (registry.has(known.package) || rule.providedBy(registry, hit[1]));
    needs.push({ path: hit[0], value: hit[1], package: known.package, factory: known.factory, registered });
  }
  return needs;
}

/** "zero_optimization.stage 2 needs @ds/zero: pnpm add @ds/zero, then initialize({ ..., plugins: [zero()] })" */
export function missingPluginMessage(need: Pick<PluginNeed, 'path' | 'value' | 'package'>): string {
  const known: KnownPlugin = knownPluginByPackage(need.package) ?? KNOWN_PLUGINS[0]!;
  const shown = typeof need.value === 'object' ? '' : ` ${show(need.value).replace(/^"|"$/g, '')}`;
  return `${need.path}${shown} needs ${need.package} (${known.provides}): ${registerHint(known)}`;
}
