import { describe, expect, it } from 'vitest';
import { z } from 'zod';

import { DSPluginError } from '../../src/errors.js';
import { createRegistry, type Plugin } from '../../src/plugin/index.js';
import { thrown } from '../helpers/config.js';

const zero = (overrides: Partial<Plugin> = {}): Plugin => ({
  name: 'zero',
  package: '@ds/zero',
  configSections: { zero_optimization: z.object({ stage: z.number() }) },
  contributes: {
    optimizerWrappers: { zero: { appliesTo: (c) => ((c.zero_optimization as { stage?: number })?.stage ?? 0) > 0, wrap: () => { throw new Error('not called by the registry tests'); } } },
    gradientReducers: { zero: { appliesTo: () => false, create: () => { throw new Error('not called by the registry tests'); } } },
  },
  ...overrides,
});

const pluginError = (fn: () => unknown): string => thrown(fn, DSPluginError).message;

describe('createRegistry', () => {
  it('records what each plugin contributes and answers by key', () => {
    const onebit: Plugin = { name: 'onebit-adam', package: '@ds/onebit-adam', contributes: { optimizers: { OneBitAdam: () => 'opt' as never, ZeroOneAdam: () => 'opt01' as never } } };
    const registry = createRegistry().use(zero()).use(onebit);
    expect(registry.has('zero') && registry.has('@ds/onebit-adam')).toBe(true);
    expect(registry.has('@ds/pipeline')).toBe(false);
    expect(registry.configSectionKeys()).toEqual(['zero_optimization']);
    expect(registry.configSection('zero_optimization')?.plugin.package).toBe('@ds/zero');
    expect(registry.optimizer('onebitadam')?.plugin.name).toBe('onebit-adam');
    expect(registry.optimizerTypes()).toEqual(['OneBitAdam', 'ZeroOneAdam']);
    expect(registry.get('gradientReducers', 'zero')?.plugin.name).toBe('zero');
    expect(registry.names('optimizerWrappers')).toEqual(['zero']);
    expect(registry.optimizerWrapperFor({ zero_optimization: { stage: 2 } } as never)?.plugin.name).toBe('zero');
    expect(registry.optimizerWrapperFor({ zero_optimization: { stage: 0 } } as never)).toBeUndefined();
  });

  it('keeps registries independent (no module-level singleton)', () => {
    const a = createRegistry([zero()]);
    const b = createRegistry();
    expect([a.has('zero'), b.has('zero')]).toEqual([true, false]);
  });

  it('rejects two plugins claiming one extension point, naming both, and stays unchanged', () => {
    const registry = createRegistry([zero()]);
    const rival: Plugin = { name: 'zero-fork', package: '@acme/zero-fork', configSections: { zero_optimization: z.object({}) }, contributes: {} };
    expect(pluginError(() => registry.use(rival))).toMatch(/config section 'zero_optimization' is claimed by both 'zero' \(@ds\/zero\) and 'zero-fork' \(@acme\/zero-fork\)/);
    expect(registry.plugins.map((p) => p.name)).toEqual(['zero']);
    const backend = (name: string): Plugin => ({ name, package: `@x/${name}`, contributes: { commBackends: { nccl: () => ({}) as never } } });
    const r2 = createRegistry([backend('a')]);
    expect(pluginError(() => r2.use(backend('b')))).toMatch(/commBackends 'nccl' is claimed by both 'a' \(@x\/a\) and 'b' \(@x\/b\)/);
  });

  it("refuses claims on core's own sections and optimizers, duplicates and malformed plugins", () => {
    expect(pluginError(() => createRegistry().use({ name: 'p', package: '@x/p', configSections: { fp16: z.object({}) }, contributes: {} }))).toMatch(/'fp16' is built into @ds\/core/);
    expect(pluginError(() => createRegistry().use({ name: 'p', package: '@x/p', contributes: { optimizers: { ADAMW: () => ({}) as never } } }))).toMatch(/optimizer 'ADAMW' is built into @ds\/core/);
    expect(pluginError(() => createRegistry([zero()]).use(zero()))).toMatch(/registered twice/);
    expect(pluginError(() => createRegistry().use({ name: '', package: '@x/p', contributes: {} }))).toMatch(/non-empty 'name'/);
    expect(pluginError(() => createRegistry().use(null as never))).toMatch(/expects a plugin object/);
  });

  it('fails when two registered wrappers or engines apply to the same config', () => {
    const engine = (name: string): Plugin => ({ name, package: `@x/${name}`, contributes: { engines: { [name]: { appliesTo: () => true, create: () => ({}) as never } } } });
    const registry = createRegistry([engine('pipe-a'), engine('pipe-b')]);
    expect(pluginError(() => registry.engineFor({} as never, {} as never))).toMatch(/'pipe-a' \(@x\/pipe-a\) and 'pipe-b' \(@x\/pipe-b\) both apply/);
  });
});
