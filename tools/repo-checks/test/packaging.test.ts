// What `pnpm add @ds/<pkg>` relies on: every published package is packed as it would be published
// (pnpm pack: prepack builds it, workspace:^ becomes ^<version>); the tarballs of the native ones carry
// their prebuilt binary; the whole set installs into a fresh app with npm and with pnpm, scripts off and
// no compiler on PATH, bins included; and the README's train.ts trains with ZeRO-2 on 2 ranks through
// `ds` in both apps and exits 0 (the design's "pnpm add @ds/zero, register the plugin" path).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { publishedPackages } from '../src/manifests.js';
import { findPnpm } from '../src/pnpm.js';

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
  '@ds/onebit-adam': {
    code: `const m = await import('@ds/onebit-adam');
const k = m.nativeOnebitKernels();
const x = Float32Array.from([1, -2, 0, -0, 3, -1, 2, -3]), bits = new Uint8Array(1), err = new Float32Array(8);
k.compressSigns(x, 1, bits, err);
console.log(JSON.stringify({ bits: bits[0], plugin: m.onebitAdam().name, padded: m.paddedSize(1, 4) }));`,
    expect: { bits: 186, plugin: 'onebit-adam', padded: 32 },
  },
  '@ds/offload-nvme': {
    // The aio engine writes and reads back a block of a scratch file (io_uring or its thread pool); the plugin has both tiers.
    code: `const m = await import('@ds/offload-nvme');
const { join } = await import('node:path'); const { tmpdir } = await import('node:os'); const { rmSync } = await import('node:fs');
const path = join(tmpdir(), 'ds-offload-smoke-' + process.pid + '.bin');
const io = new m.AioEngine({ blockSize: 4096, queueDepth: 2 });
const f = io.open(path, { write: true, create: true });
const src = m.allocAligned(8192); src.fill(7); const dst = new Uint8Array(8192);
io.write(f, src, 0).waitSync(); io.read(f, dst, 0).waitSync();
const backend = io.backend; io.close(); rmSync(path);
console.log(JSON.stringify({ same: dst.every((b) => b === 7), backend: ['io_uring', 'threads'].includes(backend), tiers: Object.keys(m.offloadNvme().contributes.offloadTiers) }));`,
    expect: { same: true, backend: true, tiers: ['cpu', 'nvme'] },
  },
  '@ds/comm-mpi': {
    // The binary loads with no link-time MPI; asking for a libmpi that is not there fails by name.
    code: `const m = await import('@ds/comm-mpi');
let error = null;
try { m.mpiBackend({ library: '/nonexistent/libmpi.so.40' }); } catch (e) { error = [e.code, /libmpi\\.so\\.40.*install Open MPI/.test(e.message)]; }
console.log(JSON.stringify({ plugin: m.mpi().contributes.commBackends ? Object.keys(m.mpi().contributes.commBackends) : [], error }));`,
    expect: { plugin: ['mpi'], error: ['DS_UNSUPPORTED', true] },
  },
  '@ds/comm-nccl': {
    // The binary loads with no link-time CUDA or NCCL; asking for a libnccl that is not there fails by name.
    code: `const m = await import('@ds/comm-nccl');
let error = null;
try { m.ncclBackend({ env: m.readNcclEnv({ DS_NCCL_LIBRARY: '/nonexistent/libnccl.so.2' }) }); } catch (e) { error = [e.code, /libnccl\\.so\\.2.*pip install nvidia-nccl-cu13/.test(e.message)]; }
console.log(JSON.stringify({ plugin: Object.keys(m.nccl().contributes.commBackends), error }));`,
    expect: { plugin: ['nccl'], error: ['DS_UNSUPPORTED', true] },
  },
};

const nativePackages = readdirSync(join(root, 'packages'))
  .filter((p) => existsSync(join(root, 'packages', p, 'native', 'addon.json')))
  .map((p) => join(root, 'packages', p));

const npmCli = realpathSync(execFileSync('bash', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
// A PATH holding node (and the few tools pnpm's sh bin shims call): no g++, cc, make, python or nvcc
// can be found by an install step.
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
let pnpmJs = '';

beforeAll(() => {
  mkdirSync(bareBin);
  symlinkSync(process.execPath, join(bareBin, 'node'));
  // pnpm's bin shims are sh scripts that call these; none of them compiles anything.
  for (const tool of ['sed', 'dirname', 'uname']) {
    const path = execFileSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    symlinkSync(path, join(bareBin, tool));
  }
  const packDir = join(work, 'tarballs');
  mkdirSync(packDir);
  // Every published package, so that both installs need no registry copy of ours.
  // pnpm pack as publishing does it, but without prepack's `turbo run build`: this package's
  // devDependencies name every published package, so turbo has built them all before this test.
  pnpmJs = findPnpm(root);
  const packEnv = { ...process.env, npm_config_ignore_scripts: 'true' };
  for (const { dir: rel } of publishedPackages(root)) {
    const dir = join(root, rel);
    const out = execFileSync(process.execPath, [pnpmJs, 'pack', '--pack-destination', packDir], { cwd: dir, env: packEnv, encoding: 'utf8', timeout: 300_000 });
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

  it('this package depends on every published package, so that they are built before it is tested', () => {
    const own = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    expect(publishedPackages(root).map((p) => p.manifest.name).filter((n) => !own.devDependencies[n])).toEqual([]);
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

/** The README's train.ts: the first ```ts block under "## Training your own model". */
function readmeTrainScript(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Training your own model'));
  const block = /```ts\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error("README.md: no ```ts block under '## Training your own model'");
  return block[1]!;
}

/** The packages the README tells a user to add (`pnpm add @ds/...`). */
function readmeAddList(): string[] {
  const m = /pnpm add((?:\s+@ds\/[\w-]+)+)/.exec(readFileSync(join(root, 'README.md'), 'utf8'));
  if (!m) throw new Error('README.md: no `pnpm add @ds/...` line');
  return m[1]!.trim().split(/\s+/);
}

// ZeRO stage 2 on 2 ranks; the README's script reads ds_config.json.
const ZERO2_CONFIG = {
  train_micro_batch_size_per_gpu: 4,
  gradient_accumulation_steps: 1,
  optimizer: { type: 'AdamW', params: { lr: 3e-3 } },
  zero_optimization: { stage: 2 },
};

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** Writes train.ts and ds_config.json into `project` and runs `ds --num_gpus 2 train.ts` there. */
async function trainThere(project: string) {
  writeFileSync(join(project, 'train.ts'), readmeTrainScript());
  writeFileSync(join(project, 'ds_config.json'), JSON.stringify(ZERO2_CONFIG, null, 2));
  rmSync(join(project, 'checkpoints'), { recursive: true, force: true });
  const port = await freePort();
  const r = spawnSync(join(project, 'node_modules', '.bin', 'ds'), ['--num_gpus', '2', '--master_port', String(port), 'train.ts', '--deepspeed_config', 'ds_config.json'], {
    cwd: project,
    env: { ...bareEnv(), DS_NUM_THREADS: '1' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect([r.status, r.signal, r.error?.message], `ds train.ts in ${project}:\n${r.stdout}\n${r.stderr}`).toEqual([0, null, undefined]);
  const losses = [...r.stdout.matchAll(/loss[ =:]+(\d+\.\d+)/gi)].map((m) => Number(m[1]));
  expect(losses.length, r.stdout).toBeGreaterThanOrEqual(2);
  expect(losses.at(-1)!, r.stdout).toBeLessThan(losses[0]!);
  // The checkpoint the script saves at its end: the tag in `latest`, one ZeRO optimizer shard per rank.
  const tag = readFileSync(join(project, 'checkpoints', 'latest'), 'utf8').trim();
  const files = readdirSync(join(project, 'checkpoints', tag)).sort();
  expect(files).toEqual(expect.arrayContaining(['zero_pp_rank_0_optim_states.safetensors', 'zero_pp_rank_1_optim_states.safetensors']));
}

/** Installed copies of a package in an npm node_modules tree (nested copies included). */
function npmCopies(project: string, name: string): string[] {
  const found: string[] = [];
  const walk = (nm: string) => {
    if (!existsSync(nm)) return;
    if (existsSync(join(nm, name, 'package.json'))) found.push(join(nm, name));
    for (const entry of readdirSync(nm)) {
      const dirs = entry.startsWith('@') ? readdirSync(join(nm, entry)).map((e) => join(nm, entry, e)) : [join(nm, entry)];
      for (const d of dirs) walk(join(d, 'node_modules'));
    }
  };
  walk(join(project, 'node_modules'));
  return found;
}

describe("the README's train.ts from the packed tarballs", () => {
  it('npm: one @ds/core and one @ds/tensor; ZeRO-2 on 2 ranks through ds trains, saves and exits 0', async () => {
    const project = join(work, 'consumer');
    expect(existsSync(join(project, 'node_modules', '@ds', 'zero')), 'the npm install test above must have run').toBe(true);
    expect(npmCopies(project, '@ds/core')).toHaveLength(1);
    expect(npmCopies(project, '@ds/tensor')).toHaveLength(1);
    await trainThere(project);
  }, 180_000);

  it('pnpm: the README\'s `pnpm add` list installs (scripts off, no compiler), holds one runtime, and trains the same way', async () => {
    const project = join(work, 'consumer-pnpm');
    mkdirSync(project);
    const tgz = (name: string) => {
      expect(tarballs[name], `${name} was not packed`).toBeDefined();
      return `file:${tarballs[name]}`;
    };
    const added = readmeAddList();
    expect(added).toEqual(expect.arrayContaining(['@ds/core', '@ds/zero', '@ds/launcher']));
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'consumer-pnpm',
        private: true,
        type: 'module',
        dependencies: Object.fromEntries(added.map((n) => [n, tgz(n)])),
        // What the registry would give for ^0.1.0: our tarballs, for every @ds package any of them needs.
        pnpm: { overrides: Object.fromEntries(Object.keys(tarballs).map((n) => [n, tgz(n)])) },
      }),
    );
    const store = execFileSync(process.execPath, [pnpmJs, 'store', 'path'], { cwd: root, encoding: 'utf8', timeout: 60_000 }).trim();
    const r = spawnSync(process.execPath, [pnpmJs, 'install', '--ignore-scripts', '--prefer-offline', '--store-dir', store, '--reporter', 'append-only'], {
      cwd: project,
      env: bareEnv(),
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(r.status, `pnpm install failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    // No warning about our packages (unmet or missing peers, bins that could not be linked).
    expect(`${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /WARN/.test(l) && /@ds\/|ds-|deepspeed/.test(l))).toEqual([]);
    const copies = (name: string) => readdirSync(join(project, 'node_modules', '.pnpm')).filter((d) => d.startsWith(`${name.replace('/', '+')}@`));
    expect(copies('@ds/core')).toHaveLength(1);
    expect(copies('@ds/tensor')).toHaveLength(1);
    await trainThere(project);
  }, 420_000);
});
