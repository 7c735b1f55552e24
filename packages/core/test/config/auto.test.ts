// HF-style "auto": initialize() resolves or rejects it exactly as loadConfig does (it validates
// through loadConfig with the same autoValues), so a config fails with the same message, and
// resolves to the same config, on both paths.
import { describe, expect, it } from 'vitest';

import { TINY_GPT } from '@ds-internal/gpt-fixtures';
import { GPT } from '@ds/tensor';

import { loadConfig, type AutoValues } from '../../src/config/index.js';
import { initialize } from '../../src/engine/initialize.js';
import { DSConfigError } from '../../src/errors.js';

const HF_STYLE = {
  train_batch_size: 'auto',
  train_micro_batch_size_per_gpu: 'auto',
  gradient_accumulation_steps: 'auto',
  gradient_clipping: 'auto',
  bf16: { enabled: 'auto' },
  optimizer: { type: 'AdamW', params: { lr: 'auto', betas: 'auto', eps: 'auto', weight_decay: 'auto' } },
  scheduler: { type: 'WarmupLR', params: { warmup_min_lr: 'auto', warmup_max_lr: 'auto', warmup_num_steps: 'auto' } },
};

const VALUES: Record<string, unknown> = {
  train_batch_size: 4,
  train_micro_batch_size_per_gpu: 2,
  gradient_accumulation_steps: 2,
  gradient_clipping: 1.0,
  'bf16.enabled': true,
  'optimizer.params.lr': 3e-4,
  'optimizer.params.betas': [0.9, 0.95],
  'optimizer.params.eps': 1e-8,
  'optimizer.params.weight_decay': 0.1,
  'scheduler.params.warmup_min_lr': 0,
  'scheduler.params.warmup_max_lr': 3e-4,
  'scheduler.params.warmup_num_steps': 10,
};

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DSConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a DSConfigError');
}

async function initMessage(config: Record<string, unknown>, autoValues?: AutoValues): Promise<string> {
  try {
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config, dist: null, log: () => {}, ...(autoValues ? { autoValues } : {}) });
    engine.destroy();
  } catch (err) {
    expect(err).toBeInstanceOf(DSConfigError);
    return (err as Error).message;
  }
  throw new Error('expected initialize to fail');
}

describe('"auto" through initialize() and loadConfig()', () => {
  it('an unresolved "auto" fails with the same message on both paths, naming each key and how to fill it', async () => {
    const fromLoad = messageOf(() => loadConfig(HF_STYLE, { worldSize: 1 }));
    expect(await initMessage(HF_STYLE)).toBe(fromLoad);
    expect(fromLoad).toContain(`optimizer.params.lr: "auto" is a Hugging Face Trainer placeholder`);
    expect(fromLoad).toContain(`pass { autoValues: { 'optimizer.params.lr': <value> } } to initialize() or loadConfig()`);
    // Partly resolved: what is left is reported alike too.
    const partial = { 'optimizer.params.lr': 1e-3, train_micro_batch_size_per_gpu: 2 };
    expect(await initMessage(HF_STYLE, partial)).toBe(messageOf(() => loadConfig(HF_STYLE, { worldSize: 1, autoValues: partial })));
  });

  it('resolved by autoValues, initialize() trains on the config loadConfig returns', async () => {
    const { config } = loadConfig(HF_STYLE, { worldSize: 1, autoValues: VALUES });
    const byFunction: AutoValues = (path) => VALUES[path];
    const { engine, optimizer } = await initialize({ model: new GPT(TINY_GPT), config: HF_STYLE, dist: null, log: () => {}, autoValues: byFunction });
    expect(engine.config).toEqual(config);
    expect([engine.trainBatchSize(), engine.gradientAccumulationSteps(), engine.paramDtype]).toEqual([4, 2, 'bf16']);
    expect(optimizer.paramGroups[0]).toMatchObject({ betas: [0.9, 0.95], weightDecay: 0.1 });
    engine.destroy();
  });

  it('"auto" where DeepSpeed itself takes it (pipeline.stages) is not reported as a placeholder', () => {
    const raw = { train_batch_size: 2, pipeline: { stages: 'auto' } };
    expect(messageOf(() => loadConfig(raw, { worldSize: 1 }))).not.toContain('Hugging Face');
  });
});
