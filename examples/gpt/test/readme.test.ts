// The README's DeepSpeed-style script (`args`, `modelParameters` groups, `trainingData`, under
// "## Coming from DeepSpeed") run as written through `ds` on 2 ranks; and the main job with a
// `flops_profiler` section, which prints the per-module table and the MFU.
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const here = join(import.meta.dirname, '..');
const root = join(here, '../..');
const ds = join(here, 'node_modules', '.bin', 'ds');
// Inside the example, so `@ds/*` resolve from its node_modules as they would in a user's project.
const work = mkdtempSync(join(here, '.readme-test-'));
const tmp = mkdtempSync(join(tmpdir(), 'ds-gpt-readme-'));
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
});

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

/** The ```<lang> block under a README heading. */
function readmeBlock(heading: string, lang: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README.md has no '${heading}' section`);
  const section = readme.slice(at + 1).split(/\n## /)[0]!;
  const block = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(section);
  if (!block) throw new Error(`README.md: no \`\`\`${lang} block under '${heading}'`);
  return block[1]!;
}

describe("the README's DeepSpeed-style script", () => {
  it('has a Python twin beside it, and the TypeScript one trains on 2 ranks through ds, saves and exits 0', async () => {
    const py = readmeBlock('## Coming from DeepSpeed', 'python');
    for (const piece of ['deepspeed.initialize(', 'model_parameters=', 'training_data=', 'args=args']) expect(py).toContain(piece);
    writeFileSync(join(work, 'train_ds.ts'), readmeBlock('## Coming from DeepSpeed', 'ts'));
    const config = { train_micro_batch_size_per_gpu: 4, optimizer: { type: 'AdamW', params: { lr: 3e-3 } }, zero_optimization: { stage: 2 } };
    writeFileSync(join(work, 'ds_config.json'), JSON.stringify(config, null, 2));
    const r = spawnSync(ds, ['--num_gpus', '2', '--master_port', await freePort(), 'train_ds.ts', '--deepspeed_config', 'ds_config.json'], {
      cwd: work,
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, FORCE_COLOR: '0', DS_NUM_THREADS: '1' },
    });
    const out = `${r.stdout}${r.stderr}`;
    expect([r.status, r.signal], out).toEqual([0, null]);
    const losses = [...out.matchAll(/step (\d+) loss (\d+\.\d+)/g)].map((m) => Number(m[2]));
    expect(losses.length, out).toBe(6); // 256 samples / (4 x 2 ranks) = 32 steps, a line every 5
    expect(losses.at(-1)!, out).toBeLessThan(losses[0]!);
    const tag = readFileSync(join(work, 'checkpoints', 'latest'), 'utf8').trim();
    expect(tag).toBe('global_step32');
    expect(readdirSync(join(work, 'checkpoints', tag))).toEqual(expect.arrayContaining(['zero_pp_rank_0_optim_states.safetensors', 'zero_pp_rank_1_optim_states.safetensors']));
  }, 300_000);
});

describe('the main job with flops_profiler', () => {
  it('prints the profile at profile_step: the summary with the MFU, and the per-module table', async () => {
    const config = { ...JSON.parse(readFileSync(join(here, 'ds_config.json'), 'utf8')), flops_profiler: { enabled: true, profile_step: 1, module_depth: -1, top_modules: 2 } };
    const file = join(tmp, 'ds_config_profile.json');
    mkdirSync(tmp, { recursive: true });
    writeFileSync(file, JSON.stringify(config));
    const r = spawnSync(ds, ['--num_gpus', '2', '--master_port', await freePort(), 'train.ts', '--deepspeed_config', file, '--model', 'tiny', '--steps', '3', '--eval-every', '0', '--save-every', '0', '--sample-tokens', '5', '--out', join(tmp, 'run')], {
      cwd: here,
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    const out = `${r.stdout}${r.stderr}`;
    expect(r.status, out).toBe(0);
    expect(out).toContain('Profile Summary at step 1:');
    expect(out).toMatch(/world size: +2\n/);
    expect(out).toMatch(/FLOPS per rank = 3 \* fwd flops per rank \/ iter latency: +\d/);
    expect(out).toMatch(/MFU = FLOPS per rank \/ measured peak per rank: +\d+\.\d%/);
    expect(out).toMatch(/\(model\): GPT +\d/);
    expect(out).toMatch(/ c_fc: Linear +\d/);
    expect(out.match(/Profile Summary/g)).toHaveLength(1); // rank 0 only, once
  }, 300_000);
});
