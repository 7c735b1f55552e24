import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// @ts-expect-error plain .mjs without types
import { buildPackage, expandSources, findNvcc } from '../src/build.mjs';

const fixture = join(import.meta.dirname, 'fixture');
const work = mkdtempSync(join(tmpdir(), 'ds-native-build-'));
cpSync(fixture, work, { recursive: true });
const require = createRequire(import.meta.url);

function writeAddonJson(cfg: unknown) {
  writeFileSync(join(work, 'native', 'addon.json'), JSON.stringify(cfg));
}

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('ds-native-build', () => {
  it('builds a cpu addon into prebuilds/linux-x64 that node-gyp-build loads', async () => {
    writeAddonJson({ cpu: { sources: ['native/*.cc'], include: ['native'], defines: ['FIXTURE_FACTOR=2'] } });
    const [r] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(r.status).toMatch(/^built/);
    expect(existsSync(join(work, 'prebuilds/linux-x64/node.napi.node'))).toBe(true);
    const addon = require('node-gyp-build')(work);
    expect(addon.twice(21)).toBe(42);
  });

  it('does no work when nothing changed, and rebuilds when a header changes', async () => {
    const out = join(work, 'prebuilds/linux-x64/node.napi.node');
    const before = statSync(out).mtimeMs;
    const [again] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(again.status).toBe('up to date');
    expect(statSync(out).mtimeMs).toBe(before);
    const header = join(work, 'native', 'fixture.h');
    writeFileSync(header, readFileSync(header, 'utf8') + '\n// touched\n');
    const [rebuilt] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(rebuilt.status).toBe('built (1/1 compiled)');
  });

  it('relinks a binary that was replaced by hand, without recompiling', async () => {
    const out = join(work, 'prebuilds/linux-x64/node.napi.node');
    const good = readFileSync(out);
    writeFileSync(out, 'not the linked binary');
    const [r] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(r.status).toBe('built (0/1 compiled)');
    expect(readFileSync(out).equals(good)).toBe(true);
    const [again] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(again.status).toBe('up to date');
  });

  it('reports a compile error with the compiler output', async () => {
    writeFileSync(join(work, 'native', 'broken.cc'), 'int broken( {');
    writeAddonJson({ cpu: { sources: ['native/*.cc'], include: ['native'], defines: ['FIXTURE_FACTOR=2'] } });
    await expect(buildPackage({ packageDir: work, cuda: 'off' })).rejects.toThrow(/broken\.cc/);
    rmSync(join(work, 'native', 'broken.cc'));
  });

  it('finds pkg: includes through node_modules, and rebuilds when such a header changes', async () => {
    const dep = join(work, 'node_modules', '@dep', 'headers');
    mkdirSync(join(dep, 'include'), { recursive: true });
    writeFileSync(join(dep, 'package.json'), '{"name": "@dep/headers"}');
    writeFileSync(join(dep, 'include', 'dep_factor.h'), '#define FIXTURE_FACTOR 3\n');
    // The factor now comes from the dependency's header (forced in with -include), not a define.
    writeAddonJson({ cpu: { sources: ['native/*.cc'], include: ['native', 'pkg:@dep/headers/include'], cflags: ['-include', 'dep_factor.h'] } });
    const [r] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(r.status).toMatch(/^built/);
    const load = () => spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(work)}).twice(21))`], { encoding: 'utf8' }).stdout.trim();
    expect(load()).toBe('63');
    writeFileSync(join(dep, 'include', 'dep_factor.h'), '#define FIXTURE_FACTOR 4\n');
    const [rebuilt] = await buildPackage({ packageDir: work, cuda: 'off' });
    expect(rebuilt.status).toBe('built (1/1 compiled)');
    expect(load()).toBe('84');
    writeAddonJson({ cpu: { sources: ['native/*.cc'], include: ['pkg:@dep/missing/include'] } });
    await expect(buildPackage({ packageDir: work, cuda: 'off' })).rejects.toThrow(/include 'pkg:@dep\/missing\/include': package @dep\/missing is not installed/);
    writeAddonJson({ cpu: { sources: ['native/*.cc'], include: ['pkg:@dep/headers/nope'] } });
    await expect(buildPackage({ packageDir: work, cuda: 'off' })).rejects.toThrow(/@dep\/headers has no nope/);
  });

  it('rejects a missing source and an unknown target by name', async () => {
    writeAddonJson({ cpu: { sources: ['native/nope.cc'] } });
    await expect(buildPackage({ packageDir: work, cuda: 'off' })).rejects.toThrow(/native\/nope\.cc/);
    writeAddonJson({ rocm: { sources: [] } });
    await expect(buildPackage({ packageDir: work, cuda: 'off' })).rejects.toThrow(/unknown target 'rocm'/);
  });

  it('expands * and ** patterns in order', () => {
    const files = expandSources(work, ['native/*.cc', 'native/**/*.h']).map((f: string) => f.slice(work.length + 1));
    expect(files).toEqual(['native/binding.cc', 'native/fixture.h']);
  });

  it('skips the cuda target without nvcc, and requires it with --cuda on', async () => {
    writeAddonJson({
      cpu: { sources: ['native/*.cc'], include: ['native'], defines: ['FIXTURE_FACTOR=2'] },
      cuda: { sources: ['native/*.cu'], arch: ['80'] },
    });
    const savedNvcc = process.env.NVCC;
    try {
      process.env.NVCC = 'none';
      const results = await buildPackage({ packageDir: work, cuda: 'auto' });
      expect(results[1]).toMatchObject({ target: 'cuda', status: 'skipped', reason: 'nvcc not found' });
      await expect(buildPackage({ packageDir: work, cuda: 'on' })).rejects.toThrow(/nvcc was not found/);
    } finally {
      if (savedNvcc === undefined) delete process.env.NVCC;
      else process.env.NVCC = savedNvcc;
    }
  });

  it.skipIf(findNvcc() === null)('compiles the cuda binary into prebuilds/linux-x64-cuda where nvcc exists', async () => {
    writeAddonJson({
      cpu: { sources: ['native/*.cc'], include: ['native'], defines: ['FIXTURE_FACTOR=2'] },
      cuda: { sources: ['native/*.cu', 'native/*.cc'], include: ['native'], defines: ['FIXTURE_FACTOR=2'], arch: ['80'] },
    });
    const results = await buildPackage({ packageDir: work, cuda: 'on' });
    expect(results[1].status).toMatch(/^built/);
    expect(statSync(join(work, 'prebuilds/linux-x64-cuda/node.napi.node')).size).toBeGreaterThan(0);
  }, 240_000);
});
