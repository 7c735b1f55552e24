// Model-state memory per rank, read from the memory tracker: stages 0-3 on 2 and 4 ranks against the
// ZeRO formulas, and DS_MEMORY_LIMIT: a model whose stage-0 states do not fit trains under stage 3.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { tinyConfig } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { modelStateBytes } from '../src/index.js';

// ~37k parameters: big enough that unit padding (< 2N elements per unit) is far below 1%.
const MEM_GPT = { vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 5 };
const psi = new GPT({ ...MEM_GPT }).numParameters();

interface Run {
  stage?: number;
  ok: boolean;
  error?: string;
  code?: string;
  live?: Record<'parameters' | 'gradients' | 'optimizer_states' | 'communication', number>;
  peak?: number;
  reported?: { parameters: number; gradients: number; optimizerStates: number };
}

function configs(): Record<string, unknown>[] {
  return [0, 1, 2, 3].map((stage) => tinyConfig(1, stage === 0 ? undefined : { stage, stage3_param_persistence_threshold: 0 }));
}

/** Core's stage 0 keeps fp32 gradients (as DeepSpeed's bf16 path does): 2 + 4 + 12 bytes per parameter. */
function expected(stage: number, n: number): number {
  return stage === 0 ? 18 * psi : modelStateBytes(stage as 1 | 2 | 3, psi, n);
}

async function runWorld(n: number, cfgs: Record<string, unknown>[], env: Record<string, string> = {}): Promise<Run[][]> {
  const w = await withWorld(n, new URL('./workers/memory.ts', import.meta.url), {
    env: { DS_TEST_CONFIGS: JSON.stringify(cfgs), DS_TEST_GPT: JSON.stringify(MEM_GPT), DS_TEST_STEPS: '1', NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc`.trim(), ...env },
    timeoutMs: 150_000,
  });
  expect(w.timedOut, describeWorld(w)).toBe(false);
  for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
  return w.ranks.map((r) => lastJson<{ runs: Run[] }>(r.stdout).runs);
}

describe('model-state memory per rank', () => {
  it.each([2, 4])('stages 0-3 on %i ranks are within 5%% of the ZeRO formulas', async (n) => {
    const out = await runWorld(n, configs());
    const table: string[] = [];
    for (const [r, runs] of out.entries()) {
      runs.forEach((run, stage) => {
        expect(run.ok, run.error).toBe(true);
        const live = run.live!;
        const bytes = live.parameters + live.gradients + live.optimizer_states;
        const want = expected(stage, n);
        if (r === 0) table.push(`stage ${stage} N=${n}: tracker ${bytes} B, formula ${want} B (${(bytes / want).toFixed(4)}x), paper ${modelStateBytes(stage as 0, psi, n)} B`);
        expect(Math.abs(bytes - want) / want, `stage ${stage} rank ${r}: ${bytes} vs ${want}`).toBeLessThan(0.05);
        // The manager's own account agrees with the tracker.
        const rep = run.reported!;
        expect(Math.abs(rep.parameters + rep.gradients + rep.optimizerStates - bytes) / bytes).toBeLessThan(0.05);
      });
    }
    console.log(`psi = ${psi}\n${table.join('\n')}`);
    // Partitioning really shrinks: each stage holds less than the one before.
    const totals = out[0]!.map((run) => run.live!.parameters + run.live!.gradients + run.live!.optimizer_states);
    for (let s = 1; s < 4; s++) expect(totals[s]!).toBeLessThan(totals[s - 1]!);
  }, 180_000);

  it('DS_MEMORY_LIMIT: stage 0 runs out of memory, stage 3 (under zeroInit) trains', async () => {
    // Between stage 3's 16/2 and stage 0's 18 bytes per parameter, with room for activations.
    const limit = String(Math.round(12 * psi));
    const stage0 = await runWorld(2, [tinyConfig(1)], { DS_MEMORY_LIMIT: limit });
    for (const runs of stage0) {
      expect(runs[0]!.ok).toBe(false);
      expect(runs[0]!.error).toMatch(/out of memory on cpu.*DS_MEMORY_LIMIT/);
    }
    const zeroCfg = tinyConfig(1, { stage: 3, stage3_param_persistence_threshold: 0, stage3_max_reuse_distance: 0, reduce_bucket_size: 20_000 });
    const stage3 = await runWorld(2, [zeroCfg], { DS_MEMORY_LIMIT: limit, DS_TEST_ZERO_INIT: '1' });
    for (const runs of stage3) {
      expect(runs[0]!.ok, runs[0]!.error).toBe(true);
      expect(runs[0]!.peak!).toBeLessThanOrEqual(Number(limit));
    }
  }, 180_000);
});
