// flops_profiler: the per-module counts against hand-written formulas, the engine's profile at
// profile_step (summary, aggregated and detailed tables, output_file, module_depth, top_modules,
// recompute_fwd_factor), and the MFU against @ds/tensor's GPT bench for the bench's model and batch.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { GPT, randint, tidy, type Tensor } from '@ds/tensor';

import { initialize } from '../../src/engine/initialize.js';
import { FlopsProfiler, flatten, type ModuleProfile } from '../../src/profiling/flops-profiler.js';
import { profileFigures, type StepProfile } from '../../src/profiling/report.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-flops-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function byName(root: ModuleProfile): Map<string, ModuleProfile> {
  return new Map(flatten(root).map((m) => [m.name, m]));
}

describe('FlopsProfiler', () => {
  it("counts a GPT's forward by the per-module formulas, with parameters and latency per module", () => {
    const cfg = { vocabSize: 40, blockSize: 12, nLayer: 2, nHead: 2, nEmbd: 16, seed: 1 };
    const [B, T, C, V, H, L] = [3, 12, cfg.nEmbd, cfg.vocabSize, cfg.nHead, cfg.nLayer];
    const model = new GPT(cfg);
    const prof = new FlopsProfiler(model);
    const ids = randint([B, T], V, { seed: 2 });
    const targets = randint([B, T], V, { seed: 3 });
    prof.start();
    tidy(() => void model.call(ids, targets).loss!.item());
    const tree = prof.stop();

    const rows = B * T;
    const linear = (i: number, o: number) => 2 * rows * i * o;
    const attention = 2 * (2 * B * H * T * T * (C / H)) + B * H * T * T;
    const block = linear(C, 3 * C) + linear(C, C) + linear(C, 4 * C) + linear(4 * C, C) + attention + 5 * rows * C + 6 * rows * C + rows * 4 * C + rows * C;
    const own = rows * C + 2 * rows * C * V + rows * V;
    expect(tree.flops).toBe(L * block + 5 * rows * C + own);
    const blockMacs = rows * C * (3 * C + C + 4 * C + 4 * C) + 2 * B * H * T * T * (C / H);
    expect(tree.macs).toBe(L * blockMacs + rows * C * V);

    const m = byName(tree);
    expect(m.get('transformer.h.1.attn.c_attn')).toMatchObject({ type: 'Linear', depth: 5, flops: linear(C, 3 * C), calls: 1, params: 3 * C * C + 3 * C });
    expect(m.get('transformer.h.0.attn')!.flops).toBe(linear(C, 3 * C) + linear(C, C) + attention);
    expect(m.get('transformer.wte')).toMatchObject({ flops: 0, calls: 1 });
    expect(tree.params).toBe(model.numParameters());
    expect(tree.latencyMs).toBeGreaterThan(0);
    expect(tree.latencyMs).toBeGreaterThanOrEqual(m.get('transformer.h.0')!.latencyMs);
    expect(flatten(tree).every((p) => p.counted)).toBe(true);

    // stop() removed the hooks: another forward leaves the counts alone.
    tidy(() => void model.call(ids, targets).loss!.item());
    expect(prof.profile().flops).toBe(tree.flops);
    ids.dispose();
    targets.dispose();
  });
});

function profilerConfig(extra: Record<string, unknown>, base: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    train_micro_batch_size_per_gpu: 2,
    gradient_accumulation_steps: 1,
    bf16: { enabled: true },
    optimizer: { type: 'AdamW', params: { lr: 1e-3 } },
    flops_profiler: { enabled: true, ...extra },
    ...base,
  };
}

async function profiledRun(extra: Record<string, unknown>, steps = 3, base: Record<string, unknown> = {}) {
  const logs: string[] = [];
  const { engine } = await initialize({ model: new GPT({ ...TINY_GPT, nLayer: 2 }), config: profilerConfig(extra, base), dist: null, log: (m) => logs.push(m) });
  await trainSteps(engine, 0, steps);
  const profile = engine.flopsProfile;
  engine.destroy();
  return { logs, profile, text: logs.join('\n') };
}

describe('flops_profiler in the engine', () => {
  it('prints the summary, the aggregated profile and the per-module table once, at profile_step', async () => {
    const { text, profile } = await profiledRun({ profile_step: 1 });
    expect(profile!.step).toBe(1);
    expect(text.match(/DeepSpeed Flops Profiler/g)).toHaveLength(2); // opening and closing rules, once
    expect(text).toContain('Profile Summary at step 1:');
    expect(text).toMatch(/fwd flops per rank: +\d/);
    expect(text).toMatch(/bwd FLOPS per rank = 2 \* fwd flops per rank \/ bwd latency: +\d/);
    expect(text).toMatch(/FLOPS per rank = 3 \* fwd flops per rank \/ iter latency: +\d/);
    expect(text).toMatch(/MFU = FLOPS per rank \/ measured peak per rank: +\d+\.\d%/);
    expect(text).toContain("depth 0:\n    params      - {'GPT': ");
    expect(text).toContain('Detailed Profile per rank');
    expect(text).toMatch(/\n {10}c_attn: Linear +\d/); // transformer.h.0.attn.c_attn: depth 5, two spaces a level
    expect(profile!.fwdMs).toBeGreaterThan(0);
    expect(profile!.bwdMs).toBeGreaterThan(0);
    expect(profile!.stepMs).toBeGreaterThan(0);
    expect(profile!.microBatch).toBe(2);
  });

  it('profile_step 0 profiles the first step; off (the default) profiles nothing', async () => {
    expect((await profiledRun({ profile_step: 0 }, 1)).profile!.step).toBe(0);
    const off = await profiledRun({ enabled: false });
    expect(off.profile).toBeNull();
    expect(off.text).not.toContain('Flops Profiler');
  });

  it('module_depth limits the tables, top_modules widens the aggregated one, detailed false drops the per-module table', async () => {
    const shallow = await profiledRun({ module_depth: 1, top_modules: 3 });
    expect(shallow.text).toContain('depth 1:');
    expect(shallow.text).not.toContain('depth 2:');
    expect(shallow.text).toMatch(/ {2}transformer: Transformer +\d/);
    expect(shallow.text).not.toMatch(/c_attn: Linear/);
    expect(shallow.text).toMatch(/depth 1:\n {4}params {6}- \{'Transformer': '[^']+', 'TiedHead': '[^']+'\}/);
    const brief = await profiledRun({ detailed: false });
    expect(brief.text).toContain('Aggregated Profile per rank');
    expect(brief.text).not.toContain('Detailed Profile per rank');
  });

  it('output_file receives the profile instead of the log', async () => {
    const file = join(dir, 'sub', 'profile.txt');
    const { text } = await profiledRun({ output_file: file });
    expect(text).not.toContain('Profile Summary');
    expect(text).toContain(`flops profiler: the profile of step 1 is in ${file}`);
    expect(readFileSync(file, 'utf8')).toContain('Profile Summary at step 1:');
  });

  it('recompute_fwd_factor adds recomputed forwards to the backward estimate', async () => {
    const { text, profile } = await profiledRun({ recompute_fwd_factor: 1 });
    expect(text).toMatch(/bwd FLOPS per rank = 3\.00 \* fwd flops per rank \/ bwd latency/);
    const f = profileFigures(profile!);
    expect(f.flopsPerSecond).toBeCloseTo((4 * profile!.tree.flops) / (f.iterMs / 1000), 0);
    const plain: StepProfile = { ...profile!, recomputeFwdFactor: 0 };
    expect(profileFigures(plain).flopsPerSecond / f.flopsPerSecond).toBeCloseTo(3 / 4, 12);
  });

  it('with gradient accumulation the last micro step of profile_step is the one reported', async () => {
    const { profile } = await profiledRun({}, 2, { gradient_accumulation_steps: 2 });
    expect(profile!.step).toBe(1);
    expect(profile!.tree.flops).toBeGreaterThan(0);
    expect(profile!.tree.calls).toBe(1);
  });
});

// @ds/tensor's bench (packages/tensor/bench/gpt.bench.ts, row gpt_train_tokens_per_s) counts a
// training step as trainFlopsPerToken = 6 N + 12 L T C per token (PaLM's count) and divides
// tokens/s x that by the measured bf16 dot peak x threads. Its formula is restated here (a test may
// not import another package's bench): the profiler's MFU for the same model and batch, over the same
// measured step, must agree with it within 3%. Timing cancels between the two, so what this checks is
// the profiler's counting (forward by module, backward as 2x) against the analytic count.
describe('MFU against the tensor bench', () => {
  it("agrees with the GPT bench's MFU for the bench's model and batch (within 3%)", async () => {
    const model = { vocabSize: 8192, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256 };
    const [B, T] = [8, 256];
    const gpt = new GPT({ ...model, seed: 0 });
    const { engine } = await initialize({
      model: gpt,
      config: { train_micro_batch_size_per_gpu: B, bf16: { enabled: true }, optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.1 } }, flops_profiler: { enabled: true, profile_step: 1 } },
      dist: null,
      log: () => {},
    });
    const ids = randint([B, T], model.vocabSize, { seed: 1 });
    const targets = randint([B, T], model.vocabSize, { seed: 2 });
    for (let s = 0; s < 2; s++) {
      const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss.keep());
      await engine.backward(loss);
      await engine.step();
      loss.dispose();
    }
    const p = engine.flopsProfile!;
    engine.destroy();
    ids.dispose();
    targets.dispose();
    expect('flops' in p.peak, JSON.stringify(p.peak)).toBe(true);
    const peak = (p.peak as { flops: number }).flops;
    const f = profileFigures(p);
    const trainFlopsPerToken = 6 * gpt.numParameters() + 12 * model.nLayer * T * model.nEmbd;
    const benchMfu = ((B * T) / (f.iterMs / 1000)) * trainFlopsPerToken / peak;
    expect(f.mfu! / benchMfu).toBeGreaterThan(0.97);
    expect(f.mfu! / benchMfu).toBeLessThan(1.03);
    console.log(`flops profiler vs GPT bench (B ${B}, T ${T}): MFU ${(100 * f.mfu!).toFixed(1)}% vs ${(100 * benchMfu).toFixed(1)}%, iter ${f.iterMs.toFixed(0)} ms, peak ${(peak / 1e9).toFixed(1)} GFLOPS (${(p.peak as { what: string }).what})`);
  }, 120_000);
});
