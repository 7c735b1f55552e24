import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { discoverPlugins, main } from '../../src/bin/ds-config.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-config-bin-'));
const emptyDir = mkdtempSync(join(tmpdir(), 'ds-config-cwd-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(emptyDir, { recursive: true, force: true });
});
const pkgRoot = join(import.meta.dirname, '..', '..');

function write(name: string, content: string | Buffer, where = dir): string {
  const path = join(where, name);
  writeFileSync(path, content);
  return path;
}

// The bin looks plugins up from its working directory; running it from a temporary directory keeps
// the workspace's own packages (a built @ds/zero) out of sight, so "NOT installed" is deterministic.
function runBin(args: string[]): { code: number; out: string; err: string } {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  // pnpm exports NODE_PATH (its hoisted store, where workspace packages are visible) to scripts.
  const { NODE_PATH: _hidden, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--import', tsx, join(pkgRoot, 'src/bin/ds-config.ts'), ...args], { cwd: emptyDir, env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

const discovered = discoverPlugins();

async function runMain(args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const code = await main(args, { out: (l) => lines.push(l), err: (l) => lines.push(l) }, () => discovered);
  return { code, text: lines.join('\n') };
}

describe('ds-config check (process)', () => {
  it('exits 0 and explains a valid config, 1 with every problem, 2 on bad usage', () => {
    const good = write('good.json', '{"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4, "bf16": {"enabled": true}}', emptyDir);
    const ok = runBin(['check', good, '--world-size', '2']);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('valid');
    expect(ok.out).toContain('train_batch_size 32 = micro 4 x gradient_accumulation_steps 4 x world size 2');

    const bad = write('bad.json', '{"train_batch_size": 30, "train_micro_batch_size_per_gpu": 4, "bp16": {}, "zero_optimization": {"stage": 3}}', emptyDir);
    const fail = runBin(['check', bad, '--world-size', '4', '--strict']);
    expect(fail.code).toBe(1);
    expect(fail.err).toContain("unknown top-level key 'bp16'; did you mean 'bf16'?");
    expect(fail.err).toContain('zero_optimization.stage 3 needs @ds/zero (ZeRO stages 1-3): pnpm add @ds/zero, then initialize({ ..., plugins: [zero()] })');
    expect(fail.err).toContain('plugin: @ds/zero for zero_optimization.stage = 3: NOT installed');

    const usage = runBin(['check', good, '--world-size', 'zero']);
    expect([usage.code, usage.err]).toEqual([2, expect.stringContaining("--world-size needs an integer >= 1, got 'zero'")]);
  });
});

describe('ds-config check (in process)', () => {
  it('--help prints the usage and exits 0; no command is a usage error', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    expect(await main(['--help'], io, () => discovered)).toBe(0);
    expect([out.join('\n'), err]).toEqual([expect.stringMatching(/^usage: ds-config check FILE/), []]);
    expect(await main([], io, () => discovered)).toBe(2);
    expect(err.join('\n')).toMatch(/^ds-config: missing command \(check\)\nusage:/);
  });

  it('reports the batch triad problem and still resolves nothing it cannot', async () => {
    const path = write('triad.json', 'train_batch_size: 30\ntrain_micro_batch_size_per_gpu: 4\ngradient_accumulation_steps: 2\n');
    const r = await runMain(['check', path, '--world-size=4']);
    expect(r.code).toBe(1);
    expect(r.text).toContain('30 != 4 * 2 * 4');
  });

  it('accepts base64 JSON in place of a file', async () => {
    const r = await runMain(['check', Buffer.from('{"train_micro_batch_size_per_gpu": 2}').toString('base64url'), '--world-size', '8']);
    expect(r.code).toBe(0);
    expect(r.text).toContain('train_batch_size 16 = micro 2');
  });

  it('never crashes on garbage: random bytes, broken JSON/hjson, deep nesting, odd values', async () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const keys = ['train_batch_size', 'fp16', 'bf16', 'optimizer', 'scheduler', 'zero_optimization', 'type', 'params', 'enabled', 'stage', '__proto__', 'constructor', 'auto', 'bp16', 'aio', 'pipeline'];
    const scalars = ['1', '0', '-1', '1e400', 'null', 'true', '"auto"', '"x"', '[]', '{}', '3.5', '"WarmupLR"', '"OneBitAdam"', '""'];
    const randomValue = (depth: number): string => {
      if (depth > 3 || rand() < 0.4) return pick(scalars);
      if (rand() < 0.5) return `[${Array.from({ length: Math.floor(rand() * 3) }, () => randomValue(depth + 1)).join(',')}]`;
      return `{${Array.from({ length: Math.floor(rand() * 4) }, () => `"${pick(keys)}": ${randomValue(depth + 1)}`).join(',')}}`;
    };
    const inputs: Array<string | Buffer> = [
      '',
      '{',
      '}',
      'null',
      '"just a string"',
      '[[[[',
      '{"a":',
      "'''unterminated",
      '#only a comment',
      '{"train_batch_size": 8,}',
      '\u0000\u0001\u0002',
      '['.repeat(50_000),
      '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000),
      'a:{'.repeat(5_000),
    ];
    for (let i = 0; i < 60; i++) inputs.push(Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))));
    for (let i = 0; i < 120; i++) inputs.push(randomValue(0));
    for (let i = 0; i < 40; i++) {
      const text = randomValue(0);
      const cut = Math.floor(rand() * text.length);
      inputs.push(text.slice(0, cut) + pick(['', '\n', ':', '}', '"', '//', '/*']) + text.slice(cut));
    }
    const codes = new Set<number>();
    for (const [i, content] of inputs.entries()) {
      const path = write(`fuzz-${i}.json`, content);
      const r = await runMain(['check', path, '--world-size', String(1 + (i % 3))]);
      expect([0, 1], `input #${i} gave exit ${r.code}: ${r.text.slice(0, 300)}`).toContain(r.code);
      expect(r.text).not.toMatch(/internal error/);
      codes.add(r.code);
    }
    expect(codes.has(1)).toBe(true);
    // The fuzz never reached Object.prototype.
    expect(({} as Record<string, unknown>).stage).toBeUndefined();
  });
});

describe('ds-config check with installed plugins', () => {
  // A fake project with @ds/zero (exporting its factory) and @ds/pipeline (exporting only its
  // configSections) installed, and @ds/sparse-attn installed but exporting neither.
  const project = join(dir, 'project');
  const modules = join(project, 'node_modules');
  function fakePackage(name: string, source: string): void {
    const root = join(modules, name);
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name, version: '9.9.9', type: 'module', exports: { '.': './index.js' } }));
    writeFileSync(join(root, 'index.js'), source);
  }
  mkdirSync(modules, { recursive: true });
  const zodRoot = dirname(realpathSync(createRequire(import.meta.url).resolve('zod/package.json')));
  symlinkSync(zodRoot, join(modules, 'zod'));
  fakePackage(
    '@ds/zero',
    "import { z } from 'zod';\nexport function zero() { return { name: 'zero', package: '@ds/zero', configSections: { zero_optimization: z.strictObject({ stage: z.number().int().min(0).max(3) }) }, contributes: {} }; }\n",
  );
  fakePackage('@ds/pipeline', "import { z } from 'zod';\nexport const configSections = { pipeline: z.strictObject({ stages: z.union([z.literal('auto'), z.number()]) }) };\n");
  fakePackage('@ds/sparse-attn', 'export const nothing = 1;\n');

  it('registers installed plugins and validates their sections with their schemas', async () => {
    const found = await discoverPlugins(project);
    // Only the project's own packages: under pnpm's test runner NODE_PATH also reaches the
    // workspace's real plugin packages (comm-mpi, ...), which resolve after the project's.
    const ours = ['@ds/pipeline', '@ds/sparse-attn', '@ds/zero'];
    expect([...found.installed].filter((p) => ours.includes(p)).sort()).toEqual(ours);
    expect(found.registry.configSectionKeys().filter((k) => ['pipeline', 'zero_optimization', 'sparse_attention'].includes(k)).sort()).toEqual(['pipeline', 'zero_optimization']);
    expect(found.notes.filter((n) => n.startsWith('@ds/sparse-attn'))).toEqual(['@ds/sparse-attn is installed but exports neither sparseAttention() nor configSections']);

    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const good = write('plugins-good.json', '{"train_batch_size": 8, "zero_optimization": {"stage": 2}, "pipeline": {"stages": "auto"}}');
    expect(await main(['check', good], io, () => Promise.resolve(found))).toBe(0);
    expect(lines.join('\n')).toContain('plugin: @ds/zero for zero_optimization.stage = 2: installed, schema checked');

    lines.length = 0;
    const bad = write('plugins-bad.json', '{"train_batch_size": 8, "zero_optimization": {"stage": 4, "overlap_com": true}, "sparse_attention": {"mode": "fixed"}}');
    expect(await main(['check', bad], io, () => Promise.resolve(found))).toBe(1);
    const text = lines.join('\n');
    expect(text).toContain('zero_optimization.stage: must be <= 3, got 4');
    expect(text).toContain("zero_optimization.overlap_com: unknown key 'overlap_com'");
    expect(text).toContain('@ds/sparse-attn is installed but exports no usable sparseAttention() plugin factory');
  });
});
