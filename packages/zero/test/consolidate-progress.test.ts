// `ds-zero to-fp32` reports progress on long work only: with a clock that says each moment is 2 s
// after the last, every rank file read, the output written and the end are a line each, naming the
// file, its bytes, the rank files and bytes so far, the elapsed time and the rate; on a clock that
// stands still (and on the real clock, for this small checkpoint) it prints nothing but its result.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TINY_GPT, tinyConfig, trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize, optimStatesFile, readSafetensors } from '@ds/core';
import { GPT } from '@ds/tensor';

import { main } from '../src/cli.js';
import { zero } from '../src/index.js';
import { formatBytes } from '@ds/core';

const root = mkdtempSync(join(tmpdir(), 'ds-zero-progress-'));
const ckpt = join(root, 'ckpt');
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(2, { stage: 3 }), plugins: [zero()], dist: null, log: () => {} });
  await trainSteps(engine, 0, 1);
  await engine.saveCheckpoint(ckpt, { tag: 'step1' });
  engine.destroy();
});

/** A clock that moves `stepMs` at every reading. */
const ticking = (stepMs: number) => {
  let t = 0;
  return () => (t += stepMs);
};

describe('ds-zero to-fp32 progress', () => {
  it('reports rank files, bytes and elapsed time once the work passes a second', () => {
    const lines: string[] = [];
    const out = join(root, 'slow.safetensors');
    const res = main(['to-fp32', ckpt, out], { progress: (l) => lines.push(l), now: ticking(2000) });
    expect(res.code, res.out).toBe(0);
    const rankBytes = statSync(join(ckpt, 'step1', optimStatesFile(0))).size;
    console.log(lines.join('\n'));
    expect(lines).toHaveLength(3);
    const so = (files: number) => `${files} of 1 rank file\\(s\\), ${formatBytes(rankBytes).replace('.', '\\.')} read in \\d+\\.\\d s, [\\d.]+ (B|KiB|MiB)/s`;
    expect(lines[0]).toMatch(new RegExp(`^to-fp32: read zero_pp_rank_0_optim_states\\.safetensors \\(${formatBytes(rankBytes).replace('.', '\\.')}\\); ${so(1)}$`));
    expect(lines[1]).toMatch(new RegExp(`^to-fp32: wrote ${out.replace(/[.]/g, '\\.')} \\(${formatBytes(statSync(out).size).replace('.', '\\.')}\\); ${so(1)}$`));
    expect(lines[2]).toMatch(new RegExp(`^to-fp32: done: ${so(1)}$`));
    // The elapsed time grows line by line (the clock moved between them).
    const secs = lines.map((l) => Number(/read in (\d+\.\d) s/.exec(l)![1]));
    expect(secs[1]!).toBeGreaterThan(secs[0]!);
    expect(secs[2]!).toBeGreaterThan(secs[1]!);
    // The result is the same consolidation as without progress.
    expect(readSafetensors(out).tensors.size).toBeGreaterThan(0);
  });

  it('prints no progress when the work is quick', () => {
    const still: string[] = [];
    expect(main(['to-fp32', ckpt, join(root, 'still.safetensors')], { progress: (l) => still.push(l), now: () => 0 }).code).toBe(0);
    expect(still).toEqual([]);
    const real: string[] = [];
    expect(main(['to-fp32', ckpt, join(root, 'real.safetensors')], { progress: (l) => real.push(l) }).code).toBe(0);
    expect(real).toEqual([]);
  });
});
