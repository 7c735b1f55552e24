// zero_optimization keys without an effect under this design are accepted with a warning saying so
// (through core's config notes), and the spellings DeepSpeed's pydantic model accepts are accepted.
import { describe, expect, it } from 'vitest';

import { TINY_GPT, tinyConfig } from '@ds-internal/gpt-fixtures';
import { createRegistry, DSConfigError, initialize, validateConfig } from '@ds/core';
import { GPT } from '@ds/tensor';

import { zero, ZERO_ALIASES } from '../src/index.js';

const load = (section: Record<string, unknown>) => validateConfig({ train_batch_size: 1, zero_optimization: section }, { registry: createRegistry([zero()]) });

describe('zero_optimization keys without effect here', () => {
  it.each([
    ['memory_efficient_linear', false, /stage 3 never keeps a gathered weight alive for backward/],
    ['override_module_apply', false, /Module has no apply\(\) to wrap/],
    ['cpu_offload_use_pin_memory', true, /deprecated .* DeepSpeed ignores it too/],
    ['use_multi_rank_bucket_allreduce', false, /each partition unit is reduced in one collective/],
  ])('%s set to %s: accepted with a one-line warning', (key, value, why) => {
    const { warnings } = load({ stage: 3, [key]: value });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ path: `zero_optimization.${key}`, value });
    expect(warnings[0]!.message).toMatch(/has no effect/);
    expect(warnings[0]!.message).toMatch(why);
    expect(load({ stage: 3 }).warnings).toEqual([]);
  });

  it('offload sub-keys warn while the device is none, and a deprecated alias says so', () => {
    const { warnings, config } = load({ stage: 3, offload_param: { device: 'none', buffer_count: 9 }, stage3_gather_fp16_weights_on_model_save: true });
    expect(warnings.map((w) => w.path)).toEqual(['zero_optimization.stage3_gather_fp16_weights_on_model_save', 'zero_optimization.offload_param.buffer_count']);
    expect(warnings[1]!.message).toMatch(/offload_param.device is 'none'/);
    expect((config.zero_optimization as Record<string, unknown>).stage3_gather_16bit_weights_on_model_save).toBe(true);
  });
});

describe('spellings DeepSpeed accepts', () => {
  it('module_granularity_threshold and use_all_reduce_for_fetch_params are the stage3_ keys, rejected by name like them', () => {
    const ok = load({ stage: 3, module_granularity_threshold: 0, use_all_reduce_for_fetch_params: false }).config.zero_optimization as Record<string, unknown>;
    expect(ok).toMatchObject({ stage3_module_granularity_threshold: 0, stage3_use_all_reduce_for_fetch_params: false });
    expect(ok).not.toHaveProperty('module_granularity_threshold');
    expect(() => load({ stage: 3, use_all_reduce_for_fetch_params: true })).toThrow(DSConfigError);
    expect(() => load({ stage: 3, module_granularity_threshold: 100 })).toThrow(/stage3_module_granularity_threshold.*fetching small modules as one unit is not built/);
  });
});

describe('more keys rejected by name when switched on', () => {
  it.each([
    ['zero_quantized_nontrainable_weights', true],
    ['round_robin_gradients', true],
    ['pipeline_loading_checkpoint', true],
    ['zeropp_loco_param', { err_beta: 0.8 }],
    ['stage3_module_granularity_threshold', 10],
    ['stage3_use_all_reduce_for_fetch_params', true],
    ['cpu_offload_param', true],
  ])('%s', (key, value) => {
    expect(() => load({ stage: 3, [key]: value })).toThrow(new RegExp(`zero_optimization\\.${key}: recognised but not supported`));
  });
});

describe('aliases', () => {
  it('every alias DeepSpeed accepts lands on its canonical key', () => {
    for (const [alias, key] of Object.entries(ZERO_ALIASES)) {
      const value = key === 'stage3_gather_16bit_weights_on_model_save' ? true : key === 'stage3_use_all_reduce_for_fetch_params' ? false : key === 'stage3_module_granularity_threshold' ? 0 : 12345;
      const c = load({ stage: 3, [alias]: value }).config.zero_optimization as Record<string, unknown>;
      expect(c[key], alias).toBe(value);
      expect(c).not.toHaveProperty(alias);
    }
  });
});

describe('contiguous_gradients', () => {
  it('false is accepted with a line saying gradients are always contiguous here', async () => {
    const logs: string[] = [];
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(1, { stage: 2, contiguous_gradients: false }), plugins: [zero()], dist: null, log: (m) => logs.push(m) });
    expect(logs.some((l) => /contiguous_gradients=false: gradients are always copied into contiguous bucket buffers here/.test(l))).toBe(true);
    engine.destroy();
  });
});
