// Issue 22: every bin of @ds/core parses its flags with node:util parseArgs, so `--x=y` and `--x y`
// mean the same, an unknown flag is a usage error (exit 2) naming it, and --help prints the usage.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { parseCommand, UsageError } from '../../src/bin/ds-bench.js';
import { discoverPlugins, main as dsConfig } from '../../src/bin/ds-config.js';
import { main as dsReport } from '../../src/bin/ds-report.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-flags-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const discovered = discoverPlugins();

async function config(args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const code = await dsConfig(args, { out: (l) => lines.push(l), err: (l) => lines.push(l) }, () => discovered);
  return { code, text: lines.join('\n') };
}

function report(args: string[]): { code: number; out: string; err: string } {
  const out: string[] = [];
  const err: string[] = [];
  const code = dsReport(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  throw new Error('no usage error');
}

describe('ds-config flags', () => {
  const file = join(dir, 'ds_config.json');
  writeFileSync(file, JSON.stringify({ train_batch_size: 8, train_micro_batch_size_per_gpu: 2 }));

  it('--world-size=2 and --world-size 2 resolve the same batch triad', async () => {
    const spaced = await config(['check', file, '--world-size', '2']);
    const joined = await config(['check', '--world-size=2', file]);
    expect(spaced.code).toBe(0);
    expect(joined).toEqual(spaced);
    expect(spaced.text).toMatch(/gradient_accumulation_steps\D+2\b/);
    expect((await config(['check', file, '--world-size=4'])).text).not.toEqual(spaced.text);
  });

  it('an unknown flag, a flag without its value, and a bad value are usage errors (2) naming the flag', async () => {
    expect(await config(['check', file, '--wrold-size=2'])).toEqual({ code: 2, text: expect.stringMatching(/^ds-config: Unknown option '--wrold-size'\nusage: ds-config check/) });
    expect(await config(['check', file, '--world-size'])).toEqual({ code: 2, text: expect.stringMatching(/^ds-config: Option '--world-size <value>' argument missing\nusage:/) });
    expect(await config(['check', file, '--world-size=two'])).toEqual({ code: 2, text: expect.stringMatching(/--world-size needs an integer >= 1, got 'two'/) });
    expect(await config(['check', file, '--strict=yes'])).toEqual({ code: 2, text: expect.stringMatching(/^ds-config: Option '--strict' does not take an argument/) });
  });

  it('-h anywhere prints the usage and exits 0', async () => {
    for (const args of [['-h'], ['check', file, '--help']]) expect(await config(args)).toEqual({ code: 0, text: expect.stringMatching(/^usage: ds-config check FILE/) });
  });
});

describe('ds-report flags', () => {
  it('--help prints the usage; --json prints the report as JSON; an unknown flag exits 2', () => {
    expect(report(['--help'])).toEqual({ code: 0, out: expect.stringMatching(/^usage: ds-report \[--json\]/), err: '' });
    const json = report(['--json']);
    expect(json.code).toBe(0);
    expect(Object.keys(JSON.parse(json.out) as object)).toEqual(['versions', 'cpu', 'threads', 'commBackends', 'plugins', 'cuda', 'libraries']);
    expect(report(['--jsn'])).toEqual({ code: 2, out: '', err: expect.stringMatching(/^ds-report: Unknown option '--jsn'\nusage: ds-report/) });
    expect(report(['extra'])).toEqual({ code: 2, out: '', err: expect.stringMatching(/^ds-report: Unexpected argument 'extra'/) });
  });
});

describe('ds-bench flags', () => {
  it('--min=1K --max 4K and --min 1K --max=4K parse alike; defaults fill the rest', () => {
    const a = parseCommand(['allreduce', '--min=1K', '--max', '4K', '--iters=3', '--registered']);
    const b = parseCommand(['allreduce', '--min', '1K', '--max=4K', '--iters', '3', '--registered']);
    expect(a).toEqual(b);
    expect(a).toEqual({ op: 'allreduce', min: 1024, max: 4096, factor: 2, iters: 3, warmup: 5, dtype: 'f32', registered: true, json: 'ds-bench.json' });
  });

  it('usage errors name the problem; --help is an empty usage error (print usage, exit 0)', () => {
    expect(usageError(() => parseCommand(['--help']))).toBe('');
    expect(usageError(() => parseCommand(['allreduce', '-h']))).toBe('');
    expect(usageError(() => parseCommand([]))).toBe('missing op');
    expect(usageError(() => parseCommand(['allfoo']))).toBe("unknown op 'allfoo'");
    expect(usageError(() => parseCommand(['allreduce', '--itrs=3']))).toBe("Unknown option '--itrs'");
    expect(usageError(() => parseCommand(['allreduce', '--iters']))).toBe("Option '--iters <value>' argument missing");
    expect(usageError(() => parseCommand(['allreduce', '--dtype=f64']))).toBe("unknown dtype 'f64'");
  });
});
