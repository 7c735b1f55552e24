// The main job through `ds` with 2 ranks: a short run, then a resumed one.
import { spawn, spawnSync } from 'node:child_process';
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

  it('after Ctrl-C mid-run, --resume continues from the last checkpoint', async () => {
    const dir = join(out, 'interrupted');
    const bin = join(here, 'node_modules', '.bin', 'ds');
    const child = spawn(bin, ['--num_gpus', '2', 'train.ts', '--deepspeed_config', 'ds_config.json', '--model', 'tiny', '--out', dir, '--steps', '400', '--save-every', '5', '--eval-every', '0'], {
      cwd: here,
      stdio: 'ignore',
      detached: false,
    });
    const exited = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    const deadline = Date.now() + 120_000;
    while (!existsSync(join(dir, 'latest')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    expect(await exited).not.toBe(0);
    const tag = readFileSync(join(dir, 'latest'), 'utf8');
    const step = Number(/^global_step(\d+)$/.exec(tag)![1]);
    expect(step).toBeGreaterThan(0);
    expect(step).toBeLessThan(400);

    const r = ds(['--out', dir, '--steps', String(step + 5), '--save-every', '5', '--eval-every', '0', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`resumed from ${join(dir, tag)} at step ${step}`);
    expect(r.out).toMatch(new RegExp(`steps +\\| +${step + 5} \\(this run: 5\\)`));
  }, 300_000);
});
