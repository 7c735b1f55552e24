// The engine in one process: it trains, accumulates, scales, clips, counts, and resumes exactly.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { batch, TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { getRuntime, GPT, tidy, type Tensor } from '@ds/tensor';

import { initialize } from '../../src/engine/initialize.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CFG = TINY_GPT;

function baseConfig(extra: Record<string, unknown> = {}) {
  return {
    train_micro_batch_size_per_gpu: 2,
    gradient_accumulation_steps: 2,
    optimizer: { type: 'AdamW', params: { lr: 3e-3, weight_decay: 0.01 } },
    scheduler: { type: 'WarmupLR', params: { warmup_min_lr: 0, warmup_max_lr: 3e-3, warmup_num_steps: 4, warmup_type: 'linear' } },
    gradient_clipping: 1.0,
    ...extra,
  };
}

describe('engine (single process)', () => {
  it('trains: the loss falls, counters and the scheduler follow DeepSpeed', async () => {
    const cfg = baseConfig({ optimizer: { type: 'AdamW', params: { lr: 2e-2 } }, scheduler: { type: 'WarmupLR', params: { warmup_max_lr: 2e-2, warmup_num_steps: 4, warmup_type: 'linear' } } });
    const { engine } = await initialize({ model: new GPT(CFG), config: cfg, dist: null, log: () => {} });
    expect(engine.trainBatchSize()).toBe(4);
    const losses = await trainSteps(engine, 0, 30);
    expect(losses[29]!).toBeLessThan(losses[0]! * 0.6);
    expect(engine.globalSteps).toBe(30);
    expect(engine.microSteps).toBe(60);
    expect(engine.globalSamples).toBe(120);
    expect(engine.getLr()[0]).toBeCloseTo(2e-2, 10);
    expect(engine.getGlobalGradNorm()).toBeGreaterThan(0);
    engine.destroy();
  });

  it('trains in bf16 with fp32 masters, close to the fp32 run', async () => {
    const a = await initialize({ model: new GPT(CFG), config: baseConfig(), dist: null, log: () => {} });
    const b = await initialize({ model: new GPT(CFG), config: baseConfig({ bf16: { enabled: true } }), dist: null, log: () => {} });
    expect(b.engine.paramDtype).toBe('bf16');
    const la = await trainSteps(a.engine, 0, 6);
    const lb = await trainSteps(b.engine, 0, 6);
    la.forEach((l, i) => expect(Math.abs(lb[i]! - l) / l).toBeLessThan(3e-2));
    const usage = b.engine.runtime.tracker;
    expect(usage).toBeDefined();
    a.engine.destroy();
    b.engine.destroy();
  });

  it('skips the step and halves the scale on an fp16 overflow', async () => {
    const { engine } = await initialize({
      model: new GPT(CFG),
      config: baseConfig({ gradient_accumulation_steps: 1, fp16: { enabled: true, initial_scale_power: 30, hysteresis: 1 } }),
      dist: null,
      log: () => {},
    });
    expect(engine.lossScale).toBe(2 ** 30);
    await trainSteps(engine, 0, 3);
    // 2^30 times a real loss overflows f16 gradients: skipped steps lower the scale until they fit.
    expect(engine.skippedSteps).toBeGreaterThan(0);
    expect(engine.lossScale).toBeLessThan(2 ** 30);
    engine.destroy();
  });

  it('resumes from a checkpoint bit-identically', async () => {
    const full = await initialize({ model: new GPT(CFG), config: baseConfig({ bf16: { enabled: true } }), dist: null, log: () => {} });
    const all = await trainSteps(full.engine, 0, 8);
    full.engine.destroy();

    const first = await initialize({ model: new GPT(CFG), config: baseConfig({ bf16: { enabled: true } }), dist: null, log: () => {} });
    const before = await trainSteps(first.engine, 0, 4);
    const path = await first.engine.saveCheckpoint(dir, { clientState: { next: 4 } });
    first.engine.destroy();
    expect(readFileSync(join(dir, 'latest'), 'utf8')).toBe('global_step4');

    const second = await initialize({ model: new GPT({ ...CFG, seed: 99 }), config: baseConfig({ bf16: { enabled: true } }), dist: null, log: () => {} });
    const loaded = await second.engine.loadCheckpoint(dir);
    expect(loaded.path).toBe(path);
    expect(loaded.clientState).toEqual({ next: 4 });
    expect(second.engine.globalSteps).toBe(4);
    const after = await trainSteps(second.engine, 4, 8);
    expect([...before, ...after]).toEqual(all);
    second.engine.destroy();
  });

  it('destroy() frees gradients and optimizer state and leaves a usable module', async () => {
    const tracker = getRuntime().tracker;
    const live = (c: 'parameters' | 'gradients' | 'optimizer_states') => tracker.liveBytes('cpu', c);
    const before = { parameters: live('parameters'), gradients: live('gradients'), optimizer_states: live('optimizer_states') };
    const model = new GPT(CFG);
    const { engine } = await initialize({ model, config: baseConfig({ bf16: { enabled: true } }), dist: null, log: () => {} });
    await trainSteps(engine, 0, 2);
    expect(live('optimizer_states')).toBe(before.optimizer_states + model.numParameters() * 12);
    engine.destroy();
    expect(live('gradients')).toBe(before.gradients);
    expect(live('optimizer_states')).toBe(before.optimizer_states);
    // The module keeps its bf16 weights, in storage of its own.
    expect(live('parameters')).toBe(before.parameters + model.numParameters() * 2);
    const { ids, targets } = batch(0, 0, 0, 2);
    const loss = tidy(() => (model.call(ids, targets) as { loss: Tensor }).loss.item());
    expect(Number.isFinite(loss)).toBe(true);
    ids.dispose();
    targets.dispose();
  });

  it('rejects a config without an optimizer by name', async () => {
    await expect(initialize({ model: new GPT(CFG), config: { train_batch_size: 2 }, dist: null, log: () => {} })).rejects.toThrow(/no optimizer/);
  });
});
