// What `pnpm add @ds/<pkg>` relies on: the packed tarball of every package with native code carries
// its prebuilt binary, and installs and runs on a machine without a compiler, bins included.
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
const k = m.createCpuKernels();
const a = Float32Array.from({ length: 6 }, (_, i) => i + 1), b = Float32Array.from([1, 0, 0, 1, 1, 1]), c = new Float32Array(4);
k.gemm({ dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 1, m: 2, n: 2, k: 3, alpha: 1, beta: 0, a, strideA: 0, b, strideB: 0, c, strideC: 0 });
console.log(JSON.stringify({ kernels: k.name, c: Array.from(c), isa: typeof m.loadCpuAddon().cpuInfo().isa }));`,
    expect: { kernels: 'cpu', c: [4, 5, 10, 11], isa: 'string' },
  },
  '@ds/core': {
    // A one-rank world: the store, a shared-memory registered buffer (native) and an all-reduce.
    code: `const m = await import('@ds/core');
const port = String(20000 + Math.floor(Math.random() * 20000));
const d = await m.initDistributed({ env: { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', LOCAL_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port } });
const buf = await d.world.allocRegistered(16);
const a = new Float32Array(buf, 0, 4);
a.set([1, 2, 3, 4]);
await d.world.allReduce({ dtype: 'f32', array: a }, { op: 'sum' });
console.log(JSON.stringify({ a: Array.from(a), size: d.size }));
await d.destroy();`,
    expect: { a: [1, 2, 3, 4], size: 1 },
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
  const toPack = new Set([join(root, 'packages', 'tensor'), ...nativePackages]);
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
    // Every bin of the installed packages is linked and runs (its committed shim finds the built entry).
    for (const name of Object.keys(tarballs)) {
      const manifest = JSON.parse(readFileSync(join(project, 'node_modules', name, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
      for (const bin of Object.keys(manifest.bin ?? {})) {
        const r = spawnSync(join(project, 'node_modules', '.bin', bin), ['--help'], { cwd: project, env: bareEnv(), encoding: 'utf8', timeout: 60_000 });
        expect([bin, r.status, r.stderr]).toEqual([bin, 0, '']);
        expect(r.stdout, bin).toMatch(/^usage: /);
      }
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
