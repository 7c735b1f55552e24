// Package boundaries (ARCHITECTURE.md section 2): tensor imports nothing of ours; core imports tensor;
// each technique package imports only core and tensor; the launcher imports nothing of ours.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

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
