// Killing a process in the middle of saveCheckpoint leaves `latest` naming a whole checkpoint.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

import { tsNodeArgs } from '@ds-internal/test-kit';
import { GPT } from '@ds/tensor';

import { initialize } from '../../src/engine/initialize.js';

const root = mkdtempSync(join(tmpdir(), 'ds-crash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs the save loop and SIGKILLs it once a save is visibly under way (a .partial directory). */
async function killMidSave(dir: string, delayMs: number): Promise<boolean> {
  const child = spawn(process.execPath, tsNodeArgs(new URL('./workers/save-loop.ts', import.meta.url)), {
    env: { ...process.env, DS_TEST_DIR: dir, RANK: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((done) => child.on('close', () => done()));
  const deadline = Date.now() + 60_000;
  let sawPartial = false;
  while (Date.now() < deadline && child.exitCode === null) {
    if (existsSync(dir) && readdirSync(dir).some((f) => f.startsWith('.loop') && f.endsWith('.partial'))) {
      await new Promise((r) => setTimeout(r, delayMs));
      sawPartial = readdirSync(dir).some((f) => f.endsWith('.partial'));
      child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  if (child.exitCode === null) child.kill('SIGKILL');
  await exited;
  expect(err).not.toMatch(/Error/);
  return sawPartial;
}

it('a crash mid-save leaves the previous checkpoint loadable', async () => {
  let killedMidSave = 0;
  for (const [i, delay] of [0, 3, 8, 15].entries()) {
    const dir = join(root, `run${i}`);
    if (await killMidSave(dir, delay)) killedMidSave++;
    const latest = readFileSync(join(dir, 'latest'), 'utf8');
    expect(existsSync(join(dir, latest, 'meta.json'))).toBe(true);
    const { engine } = await initialize({
      model: new GPT({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 4, nEmbd: 128, seed: 9 }),
      config: { train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-3 } }, bf16: { enabled: true } },
      dist: null,
      log: () => {},
    });
    const loaded = await engine.loadCheckpoint(dir);
    expect(loaded.path).toBe(join(dir, latest));
    engine.destroy();
  }
  // The kill landed inside a save (a partial directory was left behind) at least once.
  expect(killedMidSave).toBeGreaterThan(0);
}, 240_000);
