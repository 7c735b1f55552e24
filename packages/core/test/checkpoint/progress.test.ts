// Checkpoint progress: per-file lines at debug while the work is quick, at info once it has taken
// longer than a second; the engine's save and load report rank 0's files with their sizes.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { CheckpointProgress, formatBytes } from '../../src/checkpoint/progress.js';
import { initialize } from '../../src/engine/initialize.js';
import type { LogLevel } from '../../src/env.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-progress-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('CheckpointProgress', () => {
  it('logs files at debug until the work passes one second, then at info, with bytes, files, elapsed time and rate', () => {
    let t = 0;
    const lines: [LogLevel, string][] = [];
    const p = new CheckpointProgress((m, level = 'info') => lines.push([level, m]), 'saving', '/ckpt/global_step5', { now: () => t });
    p.file('a.safetensors', 512 * 1024);
    t = 1500;
    p.file('b.safetensors', 1024 * 1024 * 2.5);
    p.done();
    expect(lines).toEqual([
      ['debug', 'checkpoint: saving /ckpt/global_step5: a.safetensors (512.0 KiB); 1 file(s), 512.0 KiB in 0.0 s'],
      ['info', 'checkpoint: saving /ckpt/global_step5: b.safetensors (2.5 MiB); 2 file(s), 3.0 MiB in 1.5 s, 2.0 MiB/s'],
      ['info', 'checkpoint: saved /ckpt/global_step5: 2 file(s), 3.0 MiB in 1.5 s, 2.0 MiB/s'],
    ]);
    expect(formatBytes(1000)).toBe('1000 B');
  });
});

describe('engine checkpoints report progress', () => {
  it("a quick save and load stay quiet at the default level; at debug they list rank 0's files with their sizes", async () => {
    const run = async (env: NodeJS.ProcessEnv, out: string) => {
      const lines: string[] = [];
      const config = { train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-3 } } };
      const { engine } = await initialize({ model: new GPT(TINY_GPT), config, dist: null, log: (m) => lines.push(m), env });
      await trainSteps(engine, 0, 1);
      await engine.saveCheckpoint(out);
      await engine.loadCheckpoint(out);
      engine.destroy();
      return lines.filter((l) => l.includes('checkpoint: '));
    };
    expect(await run({}, join(dir, 'quiet'))).toEqual([]);
    const out = join(dir, 'verbose');
    const lines = await run({ DS_LOG_LEVEL: 'debug' }, out);
    const size = (f: string) => formatBytes(statSync(join(out, 'global_step1', f)).size);
    expect(lines.some((l) => l.startsWith(`debug: checkpoint: saving ${join(out, 'global_step1')}: model_states.safetensors (${size('model_states.safetensors')})`))).toBe(true);
    expect(lines.filter((l) => l.startsWith('debug: checkpoint: saved ')).map((l) => / (\d) file\(s\)/.exec(l)![1])).toEqual(['3']);
    expect(lines.filter((l) => l.startsWith('debug: checkpoint: loaded ')).map((l) => / (\d) file\(s\)/.exec(l)![1])).toEqual(['2']);
  });
});
