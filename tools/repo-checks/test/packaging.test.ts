// What `pnpm add @ds/<pkg>` relies on: the packed tarball of every package with native code carries
// its prebuilt binary, and installs and runs on a machine without a compiler.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const work = mkdtempSync(join(tmpdir(), 'ds-pack-'));

// One small program per native package that loads the installed package and runs one kernel,
// printing a JSON result. A new native package must add its entry here.
const SMOKE: Record<string, { code: string; expect: unknown }> = {
  '@ds/tensor': {
    code: `const m = await import('@ds/tensor');
const addon = m.loadCpuAddon();
const x = new Float32Array(37).fill(2), y = new Float32Array(37).fill(1);
addon.axpyF32(3, x, y);
console.log(JSON.stringify({ y0: y[0], y36: y[36], isa: typeof addon.cpuInfo().isa }));`,
    expect: { y0: 7, y36: 7, isa: 'string' },
  },
};

const nativePackages = readdirSync(join(root, 'packages'))
  .filter((p) => existsSync(join(root, 'packages', p, 'native', 'addon.json')))
  .map((p) => join(root, 'packages', p));

const npmCli = realpathSync(execFileSync('bash', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
// A PATH holding node alone: no g++, cc, make, python or nvcc can be found by an install step.
const bareBin = join(work, 'bin');

function bareEnv(): NodeJS.ProcessEnv {
  return { HOME: process.env.HOME, PATH: bareBin, npm_config_cache: process.env.npm_config_cache ?? join(process.env.HOME ?? work, '.npm') };
}

function npmInstall(project: string, tarballs: string[]) {
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const r = spawnSync(process.execPath, [npmCli, 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs], {
    cwd: project,
    env: bareEnv(),
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`npm install failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
}

function runIn(project: string, code: string) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: project, env: bareEnv(), encoding: 'utf8', timeout: 60_000 });
}

let tarballs: Record<string, string> = {};

beforeAll(() => {
  mkdirSync(bareBin);
  symlinkSync(process.execPath, join(bareBin, 'node'));
  const packDir = join(work, 'tarballs');
  mkdirSync(packDir);
  // Packages the native ones depend on are packed too, so the install needs no unpublished version.
  const toPack = new Set(nativePackages);
  toPack.add(join(root, 'packages', 'tensor'));
  for (const dir of toPack) {
    const out = execFileSync('pnpm', ['pack', '--pack-destination', packDir], { cwd: dir, encoding: 'utf8' });
    const file = out.trim().split('\n').pop()!.trim();
    const name = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string }).name;
    tarballs[name] = file;
  }
}, 300_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('installable packages', () => {
  it('the bare PATH really has no compiler', () => {
    const r = spawnSync('/bin/sh', ['-c', 'command -v g++ || command -v cc || command -v gcc || command -v nvcc || echo none'], { env: bareEnv(), encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('none');
  });

  it('every native package has a smoke program', () => {
    const names = nativePackages.map((dir) => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string }).name);
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => !SMOKE[n])).toEqual([]);
  });

  it('tarballs install with --ignore-scripts and no compiler, and their prebuilt binaries run a kernel', () => {
    const project = join(work, 'consumer');
    npmInstall(project, Object.values(tarballs));
    for (const [name, smoke] of Object.entries(SMOKE)) {
      if (!tarballs[name]) continue;
      const r = runIn(project, smoke.code);
      expect(r.stderr, `${name} failed to run`).toBe('');
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual(smoke.expect);
    }
  }, 300_000);

  it('the same install fails with a clear error when the prebuilds are removed from the tarball', () => {
    const unpacked = join(work, 'stripped');
    mkdirSync(unpacked);
    execFileSync('tar', ['xzf', tarballs['@ds/tensor']!, '-C', unpacked]);
    expect(existsSync(join(unpacked, 'package', 'prebuilds', 'linux-x64', 'node.napi.node'))).toBe(true);
    rmSync(join(unpacked, 'package', 'prebuilds'), { recursive: true });
    const stripped = join(work, 'ds-tensor-stripped.tgz');
    execFileSync('tar', ['czf', stripped, '-C', unpacked, 'package']);
    const project = join(work, 'consumer-stripped');
    npmInstall(project, [stripped]);
    const r = runIn(project, SMOKE['@ds/tensor']!.code);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/cpu addon could not be loaded/);
  }, 300_000);
});
