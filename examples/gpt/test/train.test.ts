// The main job through `ds` with 2 ranks: a short run, then a resumed one.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const here = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'ds-gpt-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** A port nobody listens on now, for the rendezvous store (so a job on the default 29500 does not collide). */
function freePort(): Promise<string> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => done(String(port)));
    });
  });
}

async function ds(args: string[]) {
  const bin = join(here, 'node_modules', '.bin', 'ds');
  const r = spawnSync(bin, ['--num_gpus', '2', '--master_port', await freePort(), 'train.ts', '--deepspeed_config', 'ds_config.json', '--model', 'tiny', '--out', out, '--sample-tokens', '20', ...args], {
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
  it('trains 2 ranks on the Brown corpus: decreasing loss, bits per byte against the baselines, summary table, loss curve and checkpoint', async () => {
    const r = await ds(['--steps', '20', '--eval-every', '10', '--save-every', '10']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('2 rank(s)');
    expect(r.out).toContain('data: the Brown corpus, 500 documents; train 450 documents');
    expect(r.out).toMatch(/baselines on the validation documents \(bits\/byte\): unigram 4\.\d+, bigram 3\.\d+, gzip -9 3\.\d+/);
    expect(r.out).toMatch(/step 20: validation \d\.\d+ bits\/byte/);
    expect(r.out).toMatch(/\| +validation bits\/byte: this model +\| +\d\.\d+ \|/);
    expect(r.out).toMatch(/\| +gzip -9 +\| +3\.\d+ \|/);
    expect(r.out).toContain('Sample (prompt "The "');
    const l = losses(r.out);
    expect(l.length).toBeGreaterThanOrEqual(2);
    expect(l.at(-1)!).toBeLessThan(l[0]!);
    expect(r.out).toMatch(/\| Training summary/);
    expect(r.out).toMatch(/rank 1 peak memory/);
    expect(readFileSync(join(out, 'loss.svg'), 'utf8')).toContain('bits per byte');
    expect(readFileSync(join(out, 'latest'), 'utf8')).toBe('global_step20');
  }, 300_000);

  it('--data DIR trains on the user\'s own text, one document per file', async () => {
    const dir = join(out, 'texts');
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 10; f++) {
      const lines = Array.from({ length: 60 }, (_, i) => `Letter ${f} line ${i}: the river ran past the mill and the old bridge.`);
      writeFileSync(join(dir, `letter${f}.txt`), lines.join('\n') + '\n');
    }
    const r = await ds(['--data', dir, '--out', join(out, 'own'), '--steps', '4', '--eval-every', '4', '--save-every', '0']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`data: ${dir}, 10 documents; train 9 documents`);
    expect(r.out).toContain('validation 1 held-out documents');
    expect(r.out).toMatch(/step 4: validation \d\.\d+ bits\/byte/);
    expect(readFileSync(join(out, 'own', 'latest'), 'utf8')).toBe('global_step4');
  }, 300_000);

  it('after Ctrl-C mid-run, --resume continues from the last checkpoint', async () => {
    const dir = join(out, 'interrupted');
    const bin = join(here, 'node_modules', '.bin', 'ds');
    const child = spawn(bin, ['--num_gpus', '2', '--master_port', await freePort(), 'train.ts', '--deepspeed_config', 'ds_config.json', '--model', 'tiny', '--out', dir, '--steps', '400', '--save-every', '5', '--eval-every', '0'], {
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

    const r = await ds(['--out', dir, '--steps', String(step + 5), '--save-every', '5', '--eval-every', '0', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`resumed from ${join(dir, tag)} at step ${step}`);
    expect(r.out).toMatch(new RegExp(`steps +\\| +${step + 5} \\(this run: 5\\)`));
  }, 300_000);
});
