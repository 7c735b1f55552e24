// The plugin registry: an object passed around (never a module-level singleton) that records which
// plugin contributes what. The engine asks it ("which optimizer is `OneBitAdam`?", "which wrapper
// handles this config?") instead of switching on plugin names.
import type { ZodType } from 'zod';

import type { Module } from '@ds/tensor';

import { DSPluginError } from '../errors.js';
import { CORE_OPTIMIZER_TYPES } from '../config/core-keys.js';
import { CORE_SECTION_KEYS, type DSConfig } from '../config/core-sections.js';
import { corePlugin } from './builtin.js';
import {
  EXTENSION_POINTS,
  type AttentionKernelContribution,
  type Contributions,
  type EngineContribution,
  type ExtensionPoint,
  type GradientReducerContribution,
  type OptimizerFactory,
  type OptimizerWrapper,
  type Plugin,
} from './types.js';

type PointValue<P extends ExtensionPoint> = NonNullable<Contributions[P]>[string];

export interface Claim<T> {
  readonly value: T;
  readonly plugin: Plugin;
  /** The name it is registered under in its extension point (or the section key). */
  readonly name: string;
}

export interface Registry {
  /** Registers a plugin; throws DSPluginError when it claims something already claimed. Chainable. */
  use(plugin: Plugin): Registry;
  /** The plugins the user registered (core's built-in contributions, such as the cpu backend, are not listed). */
  readonly plugins: readonly Plugin[];
  /** True when a plugin with this name or package is registered. */
  has(nameOrPackage: string): boolean;
  configSection(key: string): Claim<ZodType> | undefined;
  configSectionKeys(): string[];
  /** Looks up an optimizer by config `type`, case-insensitively. */
  optimizer(type: string): Claim<OptimizerFactory> | undefined;
  optimizerTypes(): string[];
  get<P extends ExtensionPoint>(point: P, name: string): Claim<PointValue<P>> | undefined;
  names(point: ExtensionPoint): string[];
  /** The one registered wrapper whose `appliesTo(config)` holds; two that apply is a DSPluginError. */
  optimizerWrapperFor(config: DSConfig): Claim<OptimizerWrapper> | undefined;
  /** The one registered engine whose `appliesTo(model, config)` holds; two is a DSPluginError. */
  engineFor(model: Module, config: DSConfig): Claim<EngineContribution> | undefined;
  /** The one attention kernel whose `appliesTo(config)` holds (its config section is on); two is a DSPluginError. */
  attentionKernelFor(config: DSConfig): Claim<AttentionKernelContribution> | undefined;
  /** The one gradient reducer whose `appliesTo(config)` holds; two is a DSPluginError. */
  gradientReducerFor(config: DSConfig): Claim<GradientReducerContribution> | undefined;
}

function describe(plugin: Plugin): string {
  return `'${plugin.name}' (${plugin.package})`;
}

/** Keys are compared case-insensitively for optimizers (DeepSpeed lower-cases the type) and exactly elsewhere. */
function claimKey(point: ExtensionPoint | 'configSections', name: string): string {
  return point === 'optimizers' ? name.toLowerCase() : name;
}

const CORE = '@ds/core';

export function createRegistry(plugins: readonly Plugin[] = []): Registry {
  const registered: Plugin[] = [];
  const sections = new Map<string, Claim<ZodType>>();
  const points = new Map<ExtensionPoint, Map<string, Claim<unknown>>>(EXTENSION_POINTS.map((p) => [p, new Map()]));
  const coreSections = new Set<string>(CORE_SECTION_KEYS);
  const coreOptimizers = new Set<string>(CORE_OPTIMIZER_TYPES.map((t) => t.toLowerCase()));

  function validatePlugin(plugin: Plugin): void {
    if (typeof plugin !== 'object' || plugin === null) {
      throw new DSPluginError(`registry.use() expects a plugin object such as zero(), got ${plugin === null ? 'null' : typeof plugin}`);
    }
    if (typeof plugin.name !== 'string' || plugin.name === '' || typeof plugin.package !== 'string' || plugin.package === '') {
      throw new DSPluginError(
        `a plugin needs a non-empty 'name' and 'package' (got name=${JSON.stringify(plugin.name)}, package=${JSON.stringify(plugin.package)}); ` +
          'build plugins with the factory their package exports, e.g. zero() from @ds/zero',
      );
    }
    if (typeof plugin.contributes !== 'object' || plugin.contributes === null) {
      throw new DSPluginError(`plugin ${describe(plugin)} has no 'contributes' object; use {} when it contributes nothing`);
    }
    const twin = registered.find((p) => p.name === plugin.name);
    if (twin) {
      throw new DSPluginError(`plugin ${describe(plugin)} is registered twice (first as ${describe(twin)}); pass each plugin once`);
    }
  }

  // Check every claim before recording any, so a rejected plugin leaves the registry unchanged.
  function conflicts(plugin: Plugin): string[] {
    const found: string[] = [];
    for (const key of Object.keys(plugin.configSections ?? {})) {
      if (coreSections.has(key)) found.push(`config section '${key}' is built into ${CORE}; ${describe(plugin)} cannot own it`);
      const prior = sections.get(key);
      if (prior) found.push(`config section '${key}' is claimed by both ${describe(prior.plugin)} and ${describe(plugin)}`);
    }
    for (const point of EXTENSION_POINTS) {
      for (const name of Object.keys(plugin.contributes[point] ?? {})) {
        const key = claimKey(point, name);
        if (point === 'optimizers' && coreOptimizers.has(key)) {
          found.push(`optimizer '${name}' is built into ${CORE}; ${describe(plugin)} cannot replace it`);
        }
        const prior = points.get(point)!.get(key);
        if (prior) found.push(`${point} '${name}' is claimed by both ${describe(prior.plugin)} and ${describe(plugin)}`);
      }
    }
    return found;
  }

  function pickOne<T>(point: ExtensionPoint, applies: (value: T) => boolean): Claim<T> | undefined {
    const hits = [...points.get(point)!.values()].filter((c) => applies(c.value as T)) as Claim<T>[];
    if (hits.length > 1) {
      throw new DSPluginError(
        `${point}: ${hits.map((h) => describe(h.plugin)).join(' and ')} both apply to this configuration; register only one of them`,
      );
    }
    return hits[0];
  }

  const registry: Registry = {
    use(plugin) {
      validatePlugin(plugin);
      const found = conflicts(plugin);
      if (found.length > 0) throw new DSPluginError(`cannot register plugin ${describe(plugin)}: ${found.join('; ')}`);
      for (const [key, schema] of Object.entries(plugin.configSections ?? {})) sections.set(key, { value: schema, plugin, name: key });
      for (const point of EXTENSION_POINTS) {
        for (const [name, value] of Object.entries(plugin.contributes[point] ?? {})) {
          points.get(point)!.set(claimKey(point, name), { value, plugin, name });
        }
      }
      registered.push(plugin);
      return registry;
    },
    get plugins() {
      return registered.filter((p) => p !== corePlugin);
    },
    has(nameOrPackage) {
      return registered.some((p) => p.name === nameOrPackage || p.package === nameOrPackage);
    },
    configSection(key) {
      return sections.get(key);
    },
    configSectionKeys() {
      return [...sections.keys()];
    },
    optimizer(type) {
      return points.get('optimizers')!.get(type.toLowerCase()) as Claim<OptimizerFactory> | undefined;
    },
    optimizerTypes() {
      return registered.flatMap((p) => Object.keys(p.contributes.optimizers ?? {}));
    },
    get(point, name) {
      return points.get(point)?.get(claimKey(point, name)) as Claim<PointValue<typeof point>> | undefined;
    },
    names(point) {
      return registered.flatMap((p) => Object.keys(p.contributes[point] ?? {}));
    },
    optimizerWrapperFor(config) {
      return pickOne<OptimizerWrapper>('optimizerWrappers', (w) => w.appliesTo(config));
    },
    engineFor(model, config) {
      return pickOne<EngineContribution>('engines', (e) => e.appliesTo(model, config));
    },
    attentionKernelFor(config) {
      return pickOne<AttentionKernelContribution>('attentionKernels', (k) => k.appliesTo?.(config) ?? false);
    },
    gradientReducerFor(config) {
      return pickOne<GradientReducerContribution>('gradientReducers', (r) => r.appliesTo(config));
    },
  };
  registry.use(corePlugin);
  for (const plugin of plugins) registry.use(plugin);
  return registry;
}
