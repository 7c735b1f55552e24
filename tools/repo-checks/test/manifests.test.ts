// Issue 22: the @ds packages install like npm packages. Each check runs on a planted bad workspace
// first, then on this repository; the end-to-end install lives in packaging.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { manifestProblems, nonWorkspaceInternalDeps, publishedPackages } from '../src/manifests.js';

const root = resolve(import.meta.dirname, '../../..');
const work = mkdtempSync(join(tmpdir(), 'ds-manifests-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function plant(name: string, files: Record<string, unknown>): string {
  const dir = join(work, name);
  const base = {
    'pnpm-workspace.yaml': 'packages:\n  - packages/*\n',
    'package.json': { name: 'root', private: true },
    '.changeset/config.json': { fixed: [['@x/*']] },
    LICENSE: 'the license\n',
  };
  for (const [path, content] of Object.entries({ ...base, ...files })) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

const good = {
  license: 'Apache-2.0',
  files: ['dist', 'LICENSE'],
  scripts: { prepack: 'TURBO_TELEMETRY_DISABLED=1 turbo run build' },
};

describe('published manifests', () => {
  it('reports each missing piece of a bad package, and nothing for a good one', () => {
    const dir = plant('bad', {
      '.changeset/config.json': { fixed: [['@ds/core', '@ds/tensor']] },
      'packages/core/package.json': { name: '@ds/core', ...good, repository: { type: 'git', directory: 'packages/core' }, dependencies: { '@ds/tensor': 'workspace:^' } },
      'packages/core/LICENSE': 'the license\n',
      'packages/tensor/package.json': { name: '@ds/tensor', ...good, repository: { type: 'git', directory: 'packages/tensor' }, os: ['linux'], cpu: ['x64'], libc: ['glibc'] },
      'packages/tensor/native/addon.json': '{}',
      'packages/tensor/LICENSE': 'the license\n',
      'packages/zero/package.json': {
        name: '@ds/zero',
        license: 'MIT',
        files: ['dist'],
        scripts: { build: 'tsup' },
        dependencies: { '@ds/core': 'workspace:*', '@ds/tensor': 'workspace:*' },
      },
      'packages/zero/native/addon.json': '{}',
      'packages/zero/LICENSE': 'another license\n',
      'packages/private/package.json': { name: '@ds-internal/kit', private: true, dependencies: { '@ds/core': '0.1.0' } },
    });
    const problems = manifestProblems(dir);
    const zero = problems.filter((p) => p.includes('@ds/zero'));
    expect(problems.filter((p) => /@ds\/(core|tensor)\)/.test(p))).toEqual([]);
    for (const want of [
      /"license" is "MIT"/,
      /packages\/zero\/LICENSE \(@ds\/zero\): differs/,
      /"files" does not list "LICENSE"/,
      /"repository" should be \{ "type": "git", "directory": "packages\/zero" \}/,
      /no "prepack" script/,
      /"os" does not list "linux"/,
      /"cpu" does not list "x64"/,
      /"libc" does not list "glibc"/,
      /dependencies\.@ds\/core is "workspace:\*"; write "workspace:\^"/,
      /@ds\/core is a dependency; make it a peerDependency/,
      /@ds\/tensor is not a peerDependency/,
      /@ds\/tensor is not a devDependency/,
      /@ds\/zero is not in the one "fixed" group/,
    ]) {
      expect(zero.some((p) => want.test(p)), `${want} in\n${zero.join('\n')}`).toBe(true);
    }
    expect(problems.some((p) => p.includes('@ds-internal/kit'))).toBe(false);
    expect(nonWorkspaceInternalDeps(dir)).toEqual(['packages/private/package.json: dependencies.@ds/core is "0.1.0"; use the workspace: protocol']);
  });

  it('hold for every published package of this repository', () => {
    expect(publishedPackages(root).map((p) => p.manifest.name)).toEqual(expect.arrayContaining(['@ds/core', '@ds/tensor', '@ds/zero', '@ds/launcher']));
    expect(manifestProblems(root)).toEqual([]);
    expect(nonWorkspaceInternalDeps(root)).toEqual([]);
  });
});

describe('a quiet install', () => {
  it('npm (and npx, which runs pnpm for the README) finds no unknown config key in .npmrc', () => {
    const r = spawnSync('npm', ['config', 'get', 'registry'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/Unknown (project|user|env|builtin) config/);
  });

  it('every turbo run of the root scripts and of prepack has telemetry off', () => {
    const scripts = [
      ...Object.values((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts),
      ...publishedPackages(root).map((p) => p.manifest.scripts?.prepack ?? ''),
    ];
    const turboRuns = scripts.flatMap((s) => s.split(/&&|;/)).filter((c) => /\bturbo\b/.test(c));
    expect(turboRuns.length).toBeGreaterThan(0);
    expect(turboRuns.filter((c) => !/TURBO_TELEMETRY_DISABLED=1\s+turbo\b/.test(c))).toEqual([]);
  });
});
