// Finding the installed @ds/* plugin packages, for the command-line tools (ds-config, ds-bench)
// that have no script of their own to register plugins in. Kept out of the bins: a bundled bin's
// code shared with another bin would lose its run-as-program check.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { KNOWN_PLUGINS } from './catalogue.js';
import { createRegistry, type Registry } from './registry.js';
import type { Plugin } from './types.js';

function resolveFrom(pkg: string, fromDir: string): string | undefined {
  for (const base of [join(fromDir, 'package.json'), import.meta.url]) {
    try {
      return createRequire(base).resolve(pkg);
    } catch {
      // not resolvable from this base; try the next
    }
  }
  return undefined;
}

/**
 * Finds installed @ds/* plugin packages (resolved from `fromDir`, then from @ds/core itself) and
 * registers each through the plugin factory it exports, or, failing that, as a bare plugin made of
 * the `configSections` it exports, so that its schema checks its sections.
 */
export async function discoverPlugins(fromDir: string = process.cwd()): Promise<{ registry: Registry; installed: Set<string>; notes: string[] }> {
  const registry = createRegistry();
  const installed = new Set<string>();
  const notes: string[] = [];
  for (const known of KNOWN_PLUGINS) {
    const path = resolveFrom(known.package, fromDir);
    if (!path) continue;
    installed.add(known.package);
    try {
      const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
      const factory = mod[known.factory];
      const sections = mod.configSections;
      if (typeof factory === 'function') registry.use((factory as () => Plugin)());
      else if (typeof sections === 'object' && sections !== null) {
        registry.use({ name: known.name, package: known.package, configSections: sections as Plugin['configSections'], contributes: {} });
      } else notes.push(`${known.package} is installed but exports neither ${known.factory}() nor configSections`);
    } catch (err) {
      notes.push(`${known.package} is installed but could not be loaded: ${(err as Error)?.message ?? String(err)}`);
    }
  }
  return { registry, installed, notes };
}

