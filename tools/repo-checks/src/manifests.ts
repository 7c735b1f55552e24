// Checks that the published @ds/* manifests install like npm packages (issue 22): one version line
// for the whole set (changesets `fixed`), caret ranges between our packages (`workspace:^`, which
// pnpm rewrites to `^<version>` when it packs), @ds/core and @ds/tensor as peer dependencies of
// every technique package so that an app holds one runtime, the platform fields on packages that ship
// a prebuilt binary, the license file, and a build before every pack. Each check takes the
// repository root, so that its test can plant a bad example.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { workspaceManifests } from './bins.js';

type DepField = 'dependencies' | 'peerDependencies' | 'devDependencies' | 'optionalDependencies';
const DEP_FIELDS: readonly DepField[] = ['dependencies', 'peerDependencies', 'devDependencies', 'optionalDependencies'];

interface Manifest {
  name: string;
  private?: boolean;
  license?: string;
  repository?: { type?: string; url?: string; directory?: string };
  os?: string[];
  cpu?: string[];
  libc?: string[];
  files?: string[];
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** The packages every app shares one copy of; technique packages take them as peers. */
export const RUNTIME_PACKAGES = ['@ds/core', '@ds/tensor'] as const;
/** Published packages that are not techniques: the runtime itself and the launcher (no @ds imports). */
// The cuda platform package is a binary of @ds/tensor, not a technique: it depends on nothing.
const NOT_TECHNIQUES = new Set<string>([...RUNTIME_PACKAGES, '@ds/launcher', '@ds/tensor-linux-x64-cuda']);

export interface PublishedPackage {
  dir: string;
  manifest: Manifest;
  native: boolean;
}

/** Every workspace package that is published (not private), with whether it ships a native binary. */
export function publishedPackages(root: string): PublishedPackage[] {
  return workspaceManifests(root)
    .filter((m) => m.dir !== '')
    .map((m) => ({ dir: m.dir, manifest: JSON.parse(readFileSync(join(root, m.dir, 'package.json'), 'utf8')) as Manifest }))
    .filter((p) => !p.manifest.private)
    .map((p) => ({ ...p, native: existsSync(join(root, p.dir, 'native', 'addon.json')) }));
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** One line per problem with a published manifest: what is wrong, where, and what to write instead. */
export function manifestProblems(root: string): string[] {
  const problems: string[] = [];
  const published = publishedPackages(root);
  const rootLicense = existsSync(join(root, 'LICENSE')) ? readFileSync(join(root, 'LICENSE'), 'utf8') : null;
  if (rootLicense === null) problems.push('LICENSE: missing at the repository root; add the Apache-2.0 text');
  for (const { dir, manifest: m, native } of published) {
    const where = `${dir}/package.json (${m.name})`;
    if (m.license !== 'Apache-2.0') problems.push(`${where}: "license" is ${JSON.stringify(m.license)}; write "Apache-2.0"`);
    const license = join(root, dir, 'LICENSE');
    if (!existsSync(license)) problems.push(`${dir}/LICENSE (${m.name}): missing; copy the repository's LICENSE there (npm ships a package's own LICENSE only)`);
    else if (rootLicense !== null && readFileSync(license, 'utf8') !== rootLicense) problems.push(`${dir}/LICENSE (${m.name}): differs from the repository's LICENSE; copy it again`);
    if (!m.files?.includes('LICENSE')) problems.push(`${where}: "files" does not list "LICENSE"`);
    if (m.repository?.type !== 'git' || m.repository.directory !== dir) {
      problems.push(`${where}: "repository" should be { "type": "git", "directory": "${dir}" } (add "url" once the public repository exists)`);
    }
    if (!/\bturbo run build\b/.test(m.scripts?.prepack ?? '')) problems.push(`${where}: no "prepack" script running \`turbo run build\`; a pack must build the package and what it depends on first`);
    if (native) {
      for (const [field, want] of [['os', 'linux'], ['cpu', 'x64'], ['libc', 'glibc']] as const) {
        if (!m[field]?.includes(want)) problems.push(`${where}: ships prebuilds/linux-x64 but "${field}" does not list "${want}"`);
      }
    }
    for (const field of DEP_FIELDS) {
      for (const [dep, spec] of Object.entries(m[field] ?? {})) {
        if (dep.startsWith('@ds/') && field !== 'devDependencies' && spec !== 'workspace:^') {
          problems.push(`${where}: ${field}.${dep} is "${spec}"; write "workspace:^" (packed as ^<version>, so that one copy satisfies every package)`);
        }
      }
    }
    if (!NOT_TECHNIQUES.has(m.name)) {
      for (const dep of RUNTIME_PACKAGES) {
        if (m.dependencies?.[dep] !== undefined) problems.push(`${where}: ${dep} is a dependency; make it a peerDependency ("workspace:^") so the app holds one runtime`);
        if (m.peerDependencies?.[dep] === undefined) problems.push(`${where}: ${dep} is not a peerDependency`);
        if (m.devDependencies?.[dep] === undefined) problems.push(`${where}: ${dep} is not a devDependency ("workspace:^"), so the workspace would not link it for the build`);
      }
    }
  }
  problems.push(...fixedVersioningProblems(root, published));
  return problems;
}

/** `.changeset/config.json` must keep every published @ds package in one `fixed` group. */
function fixedVersioningProblems(root: string, published: PublishedPackage[]): string[] {
  const config = readJson<{ fixed?: string[][] }>(join(root, '.changeset', 'config.json'));
  const groups = config.fixed ?? [];
  const matches = (name: string, pattern: string) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\/]/g, '\\$&').replace(/\*/g, '[^/]*')}$`).test(name);
  const groupOf = (name: string) => groups.findIndex((g) => g.some((p) => matches(name, p)));
  const first = published[0] ? groupOf(published[0].manifest.name) : -1;
  return published
    .filter((p) => groupOf(p.manifest.name) < 0 || groupOf(p.manifest.name) !== first)
    .map((p) => `.changeset/config.json: ${p.manifest.name} is not in the one "fixed" group of @ds packages; write "fixed": [["@ds/*"]]`);
}

/**
 * Every dependency of any workspace package (private ones included) on another workspace package
 * uses the `workspace:` protocol: pnpm 9 links those without `link-workspace-packages`, a setting
 * npm warns about when it reads .npmrc.
 */
export function nonWorkspaceInternalDeps(root: string): string[] {
  const manifests = workspaceManifests(root).map((m) => ({ dir: m.dir || '.', manifest: readJson<Manifest>(join(root, m.dir, 'package.json')) }));
  const names = new Set(manifests.map((m) => m.manifest.name));
  const problems: string[] = [];
  for (const { dir, manifest } of manifests) {
    for (const field of DEP_FIELDS) {
      for (const [dep, spec] of Object.entries(manifest[field] ?? {})) {
        if (names.has(dep) && !spec.startsWith('workspace:')) problems.push(`${dir}/package.json: ${field}.${dep} is "${spec}"; use the workspace: protocol`);
      }
    }
  }
  return problems;
}
