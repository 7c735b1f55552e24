// Typed errors (STYLE.md "Errors", ARCHITECTURE.md section 5): the library code of every @ds/*
// package throws the DS error family (DSError with a `code`, DSConfigError, DSShapeError,
// DSUnsupportedError, DSCommError, DSCheckpointError, ... and the launcher's DSLaunchError), never a
// bare Error, RangeError or TypeError, so a caller can tell our failures apart (`isDSError`, `code`)
// and every message can say what, where and what to do.
//
// Scope: packages/*/src, bins included (src/bin/*.ts). A bin throws typed errors like any library
// code and only its top-level handler prints and exits, which constructs no error, so bins need no
// exception. Not in scope: tests and benches (they may fail however they like), packages/*/bin
// (one-line shims that import dist/), and tools/* (private dev tools that are never published;
// bench-kit cannot even reach DSError, as @ds/tensor's benches depend on it). `new Error()` to read
// a stack counts too: use Error.captureStackTrace on a plain object.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');

const RAW_ERROR = /\b(?:new\s+|throw\s+)(Error|RangeError|TypeError)\s*\(/g;

/** Source with comments blanked out (line numbers kept), so prose about `new Error(` is not flagged. */
function stripComments(code: string): string {
  return code
    .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '))
    .replace(/(^|[\s;{}(),])\/\/.*$/gm, '$1');
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return /\.(?:c|m)?[jt]s$/.test(e.name) && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Every raw error under <repo>/packages/NAME/src, as { file (repo-relative), line, text }. */
function rawErrors(repo: string): { file: string; line: number; text: string }[] {
  const packagesDir = join(repo, 'packages');
  const out: { file: string; line: number; text: string }[] = [];
  for (const pkg of existsSync(packagesDir) ? readdirSync(packagesDir) : []) {
    for (const file of sourceFiles(join(packagesDir, pkg, 'src'))) {
      const lines = stripComments(readFileSync(file, 'utf8')).split('\n');
      lines.forEach((text, i) => {
        for (const m of text.matchAll(RAW_ERROR)) out.push({ file: relative(repo, file), line: i + 1, text: m[0] });
      });
    }
  }
  return out;
}

/** Every raw throw of a repository's library sources, as a problem line saying what to throw instead. */
function typedErrorProblems(repo: string): string[] {
  return rawErrors(repo).map((r) => `${r.file}:${r.line}: ${r.text} -- throw a DS error instead (DSConfigError, DSShapeError, DSUnsupportedError, DSCommError, ... or DSError with a code)`);
}

const work = mkdtempSync(join(tmpdir(), 'ds-typed-errors-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function plant(files: Record<string, string>): string {
  const dir = mkdtempSync(join(work, 'repo-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

describe('typed errors in library code', () => {
  it('reports a planted raw throw with file and line, ignoring comments, tests and typed errors', () => {
    const repo = plant({
      'packages/fake/src/bad.ts': [
        "import { DSConfigError } from '@ds/tensor';",
        '// a comment may say new Error( freely',
        '/* and so may new RangeError( a block */',
        "export function f(x: number): void {",
        "  if (x < 0) throw new RangeError(`x must be >= 0, got ${x}`);",
        "  if (x > 9) throw new DSConfigError('x is too big');",
        "  if (x === 5) throw TypeError('five'); const s = new Error().stack;",
        '}',
      ].join('\n'),
      'packages/fake/src/bin/cli.ts': "throw new Error('bins are library code too');\n",
      'packages/fake/test/ok.test.ts': "throw new Error('tests may');\n",
      'packages/fake/bin/shim.js': "throw new Error('shims are not scanned');\n",
      'tools/kit/src/index.ts': "throw new Error('tools are not scanned');\n",
    });
    expect(rawErrors(repo).map((r) => `${r.file}:${r.line}: ${r.text}`)).toEqual([
      'packages/fake/src/bad.ts:5: new RangeError(',
      'packages/fake/src/bad.ts:7: throw TypeError(',
      'packages/fake/src/bad.ts:7: new Error(',
      'packages/fake/src/bin/cli.ts:1: new Error(',
    ]);
    const problems = typedErrorProblems(repo);
    expect(problems).toHaveLength(4);
    expect(problems[0]).toMatch(/^packages\/fake\/src\/bad\.ts:5: new RangeError\( -- throw a DS error instead/);
    expect(problems[3]).toMatch(/^packages\/fake\/src\/bin\/cli\.ts:1: new Error\( -- throw a DS error instead/);
  });

  it('packages/*/src throws only typed errors', () => {
    expect(typedErrorProblems(root)).toEqual([]);
  });
});
