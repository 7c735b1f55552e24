// Partitioned checkpoints: one file per rank plus the model metadata; reload on the same number of
// ranks (training continues exactly as if uninterrupted) and on a different one (re-partitioned
// from every saved file); `ds-zero to-fp32` consolidation equals the whole fp32 masters exactly.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { describeWorld, expectClose, lastJson, withWorld } from '@ds-internal/test-kit';
import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { readSafetensors } from '@ds/core';
import { bf16ToF32, f32ToBf16 } from '@ds/tensor';

import { main } from '../src/cli.js';

const root = mkdtempSync(join(tmpdir(), 'ds-zero-ckpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const FROM = 3;
const TO = 6;

async function run(n: number, mode: 'save' | 'load', dir: string, zero: Record<string, unknown>): Promise<number[][]> {
  const config = tinyConfig(4 / n, zero);
  const w = await withWorld(n, new URL('./workers/ckpt.ts', import.meta.url), {
    env: { DS_TEST_CONFIG: JSON.stringify(config), DS_TEST_DIR: dir, DS_TEST_MODE: mode, DS_TEST_FROM: String(FROM), DS_TEST_TO: String(TO) },
    timeoutMs: 120_000,
  });
  expect(w.timedOut, describeWorld(w)).toBe(false);
  for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
  return w.ranks.map((r) => lastJson<{ losses: number[] }>(r.stdout).losses);
}

const mean = (per: number[][]) => per[0]!.map((_, s) => per.reduce((a, l) => a + l[s]!, 0) / per.length);

function expectExactMasters(dir: string, out: string): void {
  const res = main(['to-fp32', dir, out]);
  expect(res.code, res.out).toBe(0);
  const got = readSafetensors(out).tensors;
  const want = readSafetensors(`${dir}.masters.safetensors`).tensors;
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, w] of want) {
    const g = got.get(name)!.data as Float32Array;
    const wd = w.data as Float32Array;
    let bad = -1;
    for (let i = 0; i < wd.length && bad < 0; i++) if (g[i] !== wd[i]) bad = i;
    expect(bad, `${name}[${bad}]: ${g[bad]} vs ${wd[bad]}`).toBe(-1);
  }
}

describe('ZeRO checkpoints', () => {
  it('stage 2: saved on 4 ranks, reloads on 4 (exact continuation) and on 2 (re-partitioned); to-fp32 is exact', async () => {
    const zero = { stage: 2, reduce_bucket_size: 700, overlap_comm: true };
    const dir = join(root, 'z2');
    const cont = mean(await run(4, 'save', dir, zero));
    const files = readdirSync(join(dir, 'ck')).sort();
    expect(files).toEqual(['meta.json', 'model_states.safetensors', ...[0, 1, 2, 3].map((r) => `zero_pp_rank_${r}_optim_states.safetensors`)]);
    expect(readFileSync(join(dir, 'latest'), 'utf8').trim()).toBe('ck');

    expectClose(mean(await run(4, 'load', dir, zero)), cont, { rtol: 1e-6, atol: 0 }, `same ranks: mean losses of steps ${FROM}-${TO - 1}`);
    const client = JSON.parse(readFileSync(`${dir}.client.json`, 'utf8')) as { clientState: { at: number }; globalSteps: number };
    expect(client).toEqual({ clientState: { at: FROM }, globalSteps: FROM });
    expectClose(mean(await run(2, 'load', dir, zero)), cont, { rtol: 1e-3, atol: 0 }, `4 -> 2 ranks: mean losses of steps ${FROM}-${TO - 1}`);

    const out = join(root, 'z2.fp32.safetensors');
    expectExactMasters(dir, out);
    // The consolidated fp32 weights round to the 16-bit weights the checkpoint saved, bit for bit.
    const fp32 = readSafetensors(out).tensors;
    for (const [name, w] of readSafetensors(join(dir, 'ck', 'model_states.safetensors')).tensors) {
      const m = fp32.get(name)!.data as Float32Array;
      const b = w.data as Uint16Array;
      expect(fp32.get(name)!.shape).toEqual(w.shape);
      for (let i = 0; i < b.length; i++) if (f32ToBf16(m[i]!) !== b[i]) expect(`${name}[${i}] ${bf16ToF32(b[i]!)}`).toBe(`${m[i]}`);
    }
  }, 240_000);

  it('stage 3: saved on 2 ranks, reloads on 4 and under stage 1; to-fp32 is exact', async () => {
    const zero = { stage: 3, reduce_bucket_size: 700, stage3_param_persistence_threshold: 20 };
    const dir = join(root, 'z3');
    const cont = mean(await run(2, 'save', dir, zero));
    expect(existsSync(join(dir, 'ck', 'zero_pp_rank_1_optim_states.safetensors'))).toBe(true);
    expectClose(mean(await run(4, 'load', dir, zero)), cont, { rtol: 1e-3, atol: 0 }, `2 -> 4 ranks: mean losses of steps ${FROM}-${TO - 1}`);
    expectClose(mean(await run(2, 'load', dir, { stage: 1 })), cont, { rtol: 1e-3, atol: 0 }, `stage 3 -> stage 1: mean losses of steps ${FROM}-${TO - 1}`);
    expectExactMasters(dir, join(root, 'z3.fp32.safetensors'));
  }, 240_000);

  it('to-fp32 explains what it cannot consolidate', () => {
    expect(main(['to-fp32', join(root, 'nowhere'), join(root, 'x.safetensors')]).out).toMatch(/no 'latest' file/);
    expect(main(['to-fp32', 'only-one']).code).toBe(2);
  });
});
