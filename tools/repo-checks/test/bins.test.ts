// Issue 24: every bin is linked at install time (its target is a committed file, not a build output),
// and no README or message sends one of our commands to the npm registry. Each check runs on a
// planted bad example first, then on this repository.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { bareNpxUses, ourCommandNames, uncommittedBinTargets, workspaceManifests } from '../src/bins.js';

const root = resolve(import.meta.dirname, '../../..');
const work = mkdtempSync(join(tmpdir(), 'ds-bins-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A tiny workspace in a fresh directory: `files` maps paths to contents. */
function plant(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [path, text] of Object.entries({ 'pnpm-workspace.yaml': 'packages:\n  - packages/*\n', 'package.json': '{"name":"root","private":true}', ...files })) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const manifest = JSON.stringify({ name: '@x/a', bin: { 'a-cli': './bin/a-cli.js', 'a-built': './dist/bin/a-built.js', 'a-gone': './bin/a-gone.js' } });

describe('bins point at committed files', () => {
  it('reports a bin whose target is a build output (ignored) or missing, not one that is committed', () => {
    const dir = plant('uncommitted', {
      '.gitignore': 'dist/\n',
      'packages/a/package.json': manifest,
      'packages/a/bin/a-cli.js': "import '../dist/bin/a-cli.js';\n",
      'packages/a/dist/bin/a-built.js': '',
    });
    execFileSync('git', ['init', '-q'], { cwd: dir });
    execFileSync('git', ['add', '-A'], { cwd: dir });
    expect(uncommittedBinTargets(dir)).toEqual([
      expect.stringMatching(/^@x\/a: bin 'a-built' -> \.\/dist\/bin\/a-built\.js is not a committed file \(packages\/a\/dist\/bin\/a-built\.js\)/),
      expect.stringMatching(/^@x\/a: bin 'a-gone' -> \.\/bin\/a-gone\.js is not a committed file/),
    ]);
  });

  it('holds for every package of this repository', () => {
    expect(uncommittedBinTargets(root)).toEqual([]);
  });

  it('each bin/ shim, run before a build, says in one line to run pnpm build', () => {
    const shims = workspaceManifests(root).flatMap((m) => Object.values(m.bins).filter((t) => t.startsWith('./bin/')).map((t) => join(root, m.dir, t)));
    expect(shims.length).toBeGreaterThan(0);
    for (const shim of new Set(shims)) {
      // The shim with its package's bin/ folder (shims may share a helper there), without dist/.
      const pkg = mkdtempSync(join(work, 'unbuilt-'));
      writeFileSync(join(pkg, 'package.json'), '{"type":"module"}');
      cpSync(dirname(shim), join(pkg, 'bin'), { recursive: true });
      const r = spawnSync(process.execPath, [join(pkg, 'bin', basename(shim)), '--help'], { encoding: 'utf8', timeout: 30_000 });
      expect([shim, r.status, r.stdout]).toEqual([shim, 1, '']);
      expect(r.stderr, shim).toMatch(/^[\w-]+: \S+dist\/bin\/[\w-]+\.js is not built; .*run `pnpm build` first.*\n$/);
    }
  });
});

describe('no command falls through to the npm registry', () => {
  it('reports npx/npm exec/pnpm dlx of our bins and packages in READMEs and sources, and nothing else', () => {
    const bad = 'n' + 'px'; // spelled apart so that this file never reads as a bad example itself
    const dir = plant('bare-npx', {
      'packages/a/package.json': manifest.replace(/}$/, `, "scripts": { "go": "${bad} a-cli go", "ok": "a-cli go" } }`),
      'README.md': [
        `${bad} a-cli run`,
        `${bad} -y a-cli`,
        `${bad} --no-install a-cli`,
        `${bad} -y pnpm@9.15.9 install --frozen-lockfile`,
        'pnpm exec a-cli --help (from @x/a)',
        'npm exec --no -- a-cli',
        'npm exec a-cli',
        `${bad} vitest run`,
        `run \`${bad} a-cli@latest\` or \`${bad} @x/a\``,
        'pnpm dlx a-built',
      ].join('\n'),
      'packages/a/src/hint.ts': `export const HINT = 'try ${bad} a-gone';\n`,
      'packages/a/test/hint.test.ts': `const planted = '${bad} a-cli';\n`,
      'packages/a/notes.md': `${bad} a-cli\n`,
    });
    expect(ourCommandNames(dir)).toEqual(new Set(['root', '@x/a', 'a-cli', 'a-built', 'a-gone']));
    const found = bareNpxUses(dir).map((p) => p.slice(0, p.indexOf('` asks') + 1));
    expect(found.sort()).toEqual(
      [
        `README.md:1: \`${bad} a-cli\``,
        `README.md:2: \`${bad} -y a-cli\``,
        'README.md:7: `npm exec a-cli`',
        `README.md:9: \`${bad} a-cli@latest\``,
        `README.md:9: \`${bad} @x/a\``,
        'README.md:10: `pnpm dlx a-built`',
        `packages/a/src/hint.ts:1: \`${bad} a-gone\``,
        `packages/a/package.json:1: \`${bad} a-cli\``,
      ].sort(),
    );
  });

  it('holds for every README and source file of this repository', () => {
    expect(bareNpxUses(root)).toEqual([]);
  });
});
