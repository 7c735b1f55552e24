// The main job through `ds` with 2 ranks: a short run, then a resumed one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const here = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'ds-gpt-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function ds(args: string[]) {
  const bin = join(here, 'node_modules', '.bin', 'ds');
  const r = spawnSync(bin, ['--num_gpus', '2', 'train.ts', '--deepspeed_config', 'ds_config.json', '--model', 'tiny', '--out', out, '--sample-tokens', '20', ...args], {
    cwd: here,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function losses(text: string): number[] {
  return [...text.matchAll(/step +\d+\/\d+ \| loss ([0-9.]+)/g)].map((m) => Number(m[1]));
}

describe('examples/gpt through ds', () => {
  it('trains 2 ranks: decreasing loss, summary table, loss curve and checkpoint', () => {
    const r = ds(['--steps', '20', '--eval-every', '10', '--save-every', '10']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('2 rank(s)');
    const l = losses(r.out);
    expect(l.length).toBeGreaterThanOrEqual(2);
    expect(l.at(-1)!).toBeLessThan(l[0]!);
    expect(r.out).toMatch(/\| Training summary/);
    expect(r.out).toMatch(/rank 1 peak memory/);
    expect(existsSync(join(out, 'loss.svg'))).toBe(true);
    expect(readFileSync(join(out, 'latest'), 'utf8')).toBe('global_step20');
  }, 300_000);

  it('continues from the last checkpoint with --resume', () => {
    const r = ds(['--steps', '30', '--eval-every', '10', '--save-every', '10', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/resumed from .*global_step20 at step 20/);
    expect(r.out).toMatch(/steps +\| +30 \(this run: 10\)/);
    expect(readFileSync(join(out, 'latest'), 'utf8')).toBe('global_step30');
  }, 300_000);
});
