// Package boundaries (ARCHITECTURE.md section 2): tensor imports nothing of ours; core imports tensor;
// each technique package imports only core and tensor; the launcher imports nothing of ours.
// Tests and benches (packages/*/test, packages/*/bench) may import their own package (by relative
// path or by name), the @ds/* packages their package.json depends on and the @ds-internal/* tools
// it declares (@ds-internal/test-kit holds what tests share) -- never another package's src/ or
// test/ by relative path, nor an @ds/* package by a deep path.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const packagesDir = join(root, 'packages');

const ALLOWED: Record<string, string[]> = {
  tensor: [],
  core: ['@ds/tensor'],
  launcher: [],
};
const TECHNIQUE_ALLOWED = ['@ds/core', '@ds/tensor'];

function allowedFor(pkg: string): string[] {
  return ALLOWED[pkg] ?? TECHNIQUE_ALLOWED;
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(full));
    else if (/\.(ts|mts|js|mjs)$/.test(entry.name)) out.push(full);
  }
  return out;
}

const IMPORT_RE = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(IMPORT_RE)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

const packages = readdirSync(packagesDir).filter((p) => existsSync(join(packagesDir, p, 'package.json')));

interface Manifest {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

/** Forbidden imports of packages/<pkg>/test and packages/<pkg>/bench under `repo`, one line each. */
function testImportProblems(repo: string, pkg: string): string[] {
  const pkgRoot = join(repo, 'packages', pkg);
  const manifest = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')) as Manifest;
  const declared = new Set(Object.keys({ ...manifest.dependencies, ...manifest.devDependencies, ...manifest.peerDependencies }));
  const problems: string[] = [];
  for (const file of ['test', 'bench'].flatMap((dir) => sourceFiles(join(pkgRoot, dir)))) {
    const rel = relative(repo, file);
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const [scope, name, ...deep] = spec.split('/');
      const target = `${scope}/${name}`;
      if (scope === '@ds' && deep.length > 0) problems.push(`${rel} imports ${spec}: import ${target} by its name only`);
      else if (scope === '@ds' && target !== `@ds/${pkg}` && !declared.has(target)) problems.push(`${rel} imports ${target}, which packages/${pkg}/package.json does not depend on`);
      else if (scope === '@ds-internal' && !declared.has(target)) problems.push(`${rel} imports ${target}; add it to packages/${pkg}/package.json devDependencies ("workspace:*")`);
      else if (spec.startsWith('.') && !resolve(dirname(file), spec).startsWith(pkgRoot + '/')) {
        problems.push(`${rel} reaches outside its package with ${spec}; share it through @ds-internal/test-kit or the other package's exports`);
      }
    }
  }
  return problems;
}

describe('package boundaries', () => {
  it('finds the import forms it checks', () => {
    expect(importsOf(`import { a } from '@ds/core';\nexport * from "./x.js";\nconst m = await import('@ds/zero');`)).toEqual(['@ds/core', './x.js', '@ds/zero']);
  });

  it.each(packages)('packages/%s imports only what its layer allows', (pkg) => {
    const problems: string[] = [];
    const pkgRoot = join(packagesDir, pkg);
    for (const file of sourceFiles(join(pkgRoot, 'src'))) {
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        const rel = relative(root, file);
        if (spec.startsWith('@ds/')) {
          const target = spec.split('/').slice(0, 2).join('/');
          if (target !== `@ds/${pkg}` && !allowedFor(pkg).includes(target)) problems.push(`${rel} imports ${spec}`);
        } else if (spec.startsWith('.')) {
          const resolved = resolve(join(file, '..'), spec);
          if (!resolved.startsWith(pkgRoot + '/')) problems.push(`${rel} reaches outside its package with ${spec}`);
        }
      }
    }
    const manifest = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(manifest.dependencies ?? {})) {
      if (dep.startsWith('@ds/') && !allowedFor(pkg).includes(dep)) problems.push(`packages/${pkg}/package.json depends on ${dep}`);
    }
    expect(problems, `forbidden imports (allowed for ${pkg}: ${allowedFor(pkg).join(', ') || 'none of ours'})`).toEqual([]);
  });
});

const work = mkdtempSync(join(tmpdir(), 'ds-boundaries-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('test and bench boundaries', () => {
  it('reports a planted test that reaches into another package, an undeclared package and a deep import', () => {
    const files: Record<string, string> = {
      'packages/zero/package.json': JSON.stringify({ name: '@ds/zero', dependencies: { '@ds/core': 'workspace:*' }, devDependencies: { '@ds-internal/test-kit': 'workspace:*', '@ds-internal/gpt-fixtures': 'workspace:*' } }),
      'packages/zero/test/ok.test.ts': [
        "import { zero } from '../src/index.js';",
        "import { helper } from './helpers/local.js';",
        "import { initialize } from '@ds/core';",
        "import { zeroInit } from '@ds/zero';",
        "import { withWorld } from '@ds-internal/test-kit';",
        "import { TINY_GPT } from '@ds-internal/gpt-fixtures';",
      ].join('\n'),
      'packages/zero/test/bad.test.ts': [
        "import { withWorld } from '../../core/test/helpers/world.js';",
        "import { Engine } from '../../core/src/engine/engine.js';",
        "import { GPT } from '@ds/tensor';",
        "import { flat } from '@ds/core/src/engine/flat.js';",
        "import { table } from '@ds-internal/bench-kit';",
      ].join('\n'),
      'packages/zero/bench/run.ts': "import { describeWorld } from '../../core/test/helpers/world.js';\n",
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(work, path)), { recursive: true });
      writeFileSync(join(work, path), text);
    }
    expect(testImportProblems(work, 'zero')).toEqual([
      "packages/zero/test/bad.test.ts reaches outside its package with ../../core/test/helpers/world.js; share it through @ds-internal/test-kit or the other package's exports",
      "packages/zero/test/bad.test.ts reaches outside its package with ../../core/src/engine/engine.js; share it through @ds-internal/test-kit or the other package's exports",
      'packages/zero/test/bad.test.ts imports @ds/tensor, which packages/zero/package.json does not depend on',
      'packages/zero/test/bad.test.ts imports @ds/core/src/engine/flat.js: import @ds/core by its name only',
      'packages/zero/test/bad.test.ts imports @ds-internal/bench-kit; add it to packages/zero/package.json devDependencies ("workspace:*")',
      "packages/zero/bench/run.ts reaches outside its package with ../../core/test/helpers/world.js; share it through @ds-internal/test-kit or the other package's exports",
    ]);
  });

  it.each(packages)('packages/%s/test and bench import only their package, its dependencies and @ds-internal tools', (pkg) => {
    expect(testImportProblems(root, pkg)).toEqual([]);
  });
});
