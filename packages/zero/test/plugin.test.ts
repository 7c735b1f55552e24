// The zero() plugin in one process: its config section (DeepSpeed's keys and defaults, unknown and
// unbuilt keys rejected by name), DeepSpeed's compatibility rules, the stage-0 fallback, and stages
// 1-3 on a single rank following stage 0.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { TINY_GPT, tinyConfig, trainSteps } from '@ds-internal/gpt-fixtures';
import { bucketGroups, createRegistry, DataParallelState, DSConfigError, initialize, planUnits, readSafetensors, validateConfig } from '@ds/core';
import { getRuntime, GPT } from '@ds/tensor';

import { gatheredParameters, registerExternalParameter, Stage12State, Stage3State, zero, ZERO_ALIASES, zeroConfigOf, zeroInit } from '../src/index.js';
import { planStage3 } from '../src/stage3-plan.js';

const registry = () => createRegistry([zero()]);
const section = (zeroSection: unknown) => validateConfig({ train_batch_size: 1, zero_optimization: zeroSection } as never, { registry: registry() }).config.zero_optimization as Record<string, unknown>;
const problems = (zeroSection: unknown): string => {
  try {
    section(zeroSection);
  } catch (err) {
    expect(err).toBeInstanceOf(DSConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the config to be rejected');
};

describe('zero_optimization section', () => {
  it("fills DeepSpeed's defaults (overlap_comm: true only for stage 3)", () => {
    const c = section({ stage: 2 });
    expect(c).toMatchObject({ stage: 2, contiguous_gradients: true, reduce_scatter: true, reduce_bucket_size: 5e8, allgather_bucket_size: 5e8, overlap_comm: false, sub_group_size: 1e9 });
    expect(c).toMatchObject({ stage3_prefetch_bucket_size: 5e7, stage3_param_persistence_threshold: 1e5, stage3_max_live_parameters: 1e9, stage3_max_reuse_distance: 1e9, ignore_unused_parameters: true });
    expect(section({ stage: 3 }).overlap_comm).toBe(true);
    expect(section({ stage: 3, overlap_comm: false }).overlap_comm).toBe(false);
  });

  it('maps the deprecated and short spellings onto the stage3_ keys', () => {
    expect(Object.keys(ZERO_ALIASES)).toContain('stage3_gather_fp16_weights_on_model_save');
    const c = section({ stage: 3, stage3_gather_fp16_weights_on_model_save: true, prefetch_bucket_size: 123 });
    expect(c.stage3_gather_16bit_weights_on_model_save).toBe(true);
    expect(c.stage3_prefetch_bucket_size).toBe(123);
    expect(c).not.toHaveProperty('prefetch_bucket_size');
  });

  it('rejects unknown keys with the nearest valid one, and stages above 3', () => {
    expect(problems({ stage: 2, reduce_bucket_sise: 10 })).toMatch(/zero_optimization\.reduce_bucket_sise.*did you mean 'reduce_bucket_size'/);
    expect(problems({ stage: 2, grad_hooks: true })).toMatch(/unknown key 'grad_hooks'/);
    expect(problems({ stage: 4 })).toMatch(/zero_optimization\.stage: must be <= 3/);
  });

  it('rejects recognised but unbuilt features by name', () => {
    // offload_optimizer is built on the registry's offload tiers: without one registered, the config names the package that has them.
    expect(problems({ stage: 2, offload_optimizer: { device: 'cpu' } })).toMatch(/zero_optimization\.offload_optimizer\.device cpu needs @ds\/offload-nvme .*pnpm add @ds\/offload-nvme, then initialize\(\{ \.\.\., plugins: \[offloadNvme\(\)\] \}\)/);
    // offload_param is built at stage 3 on the same tiers; at stages 1-2 there is no parameter partition to offload.
    expect(problems({ stage: 3, offload_param: { device: 'nvme', nvme_path: '/x' } })).toMatch(/offload_param\.device nvme needs @ds\/offload-nvme/);
    expect(problems({ stage: 2, offload_param: { device: 'cpu' } })).toMatch(/zero_optimization\.offload_param\.device: recognised but not supported: offload_param to 'cpu' \(parameter offload\) needs stage 3/);
    for (const key of ['zero_quantized_weights', 'zero_quantized_gradients', 'elastic_checkpoint', 'legacy_stage1', 'mics_hierarchical_params_gather', 'cpu_offload']) {
      expect(problems({ stage: 1, [key]: true })).toMatch(new RegExp(`zero_optimization\\.${key}: recognised but not supported`));
    }
    expect(problems({ stage: 3, zero_hpz_partition_size: 2 })).toMatch(/zero_hpz_partition_size.*hpZ/);
    expect(problems({ stage: 3, mics_shard_size: 4 })).toMatch(/mics_shard_size.*MiCS/);
    // "Off" values of the same keys are accepted.
    expect(section({ stage: 2, offload_optimizer: { device: 'none' }, zero_hpz_partition_size: 1, mics_shard_size: -1 }).stage).toBe(2);
  });
});

describe('compatibility rules', () => {
  it('fails non-whitelisted optimizers unless zero_allow_untested_optimizer', async () => {
    const sgd = { ...tinyConfig(1, { stage: 2 }), optimizer: { type: 'SGD', params: { lr: 0.1 } } };
    await expect(initialize({ model: new GPT(TINY_GPT), config: sgd, plugins: [zero()], dist: null, log: () => {} })).rejects.toThrow(/untested ZeRO Optimizer \(SGD\).*"zero_allow_untested_optimizer": true/);
    const logs: string[] = [];
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config: { ...sgd, zero_allow_untested_optimizer: true }, plugins: [zero()], dist: null, log: (m) => logs.push(m) });
    expect(engine.zeroStage).toBe(2);
    expect(logs.join('\n')).toMatch(/untested optimizer \(SGD\)/);
    engine.destroy();
  });

  it('stage 0 with the plugin registered stays core data parallelism', async () => {
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(1, { stage: 0 }), plugins: [zero()], dist: null, log: () => {} });
    expect(engine.zeroStage).toBe(0);
    expect(engine.stateManager).toBeInstanceOf(DataParallelState);
    engine.destroy();
  });
});

describe('partition units', () => {
  it('pads each unit to 2 x world and cuts it into equal blocks', () => {
    // Back to front; a parameter larger than the bucket gets its own.
    const sizes = [5, 4, 300, 2];
    const groups = bucketGroups(sizes, 10);
    expect(groups).toEqual([[3], [2], [1, 0]]);
    const plan = planUnits(groups, sizes, 4, 1);
    expect(plan.units.map((u) => [u.numel, u.padded, u.block, u.shardStart])).toEqual([[2, 8, 2, 0], [300, 304, 76, 2], [9, 16, 4, 78]]);
    expect(plan.flatNumel).toBe(328);
    expect(plan.shardNumel).toBe(82);
    expect(plan.flatOffset).toEqual([316, 312, 8, 0]);
  });
});

describe('stage 3 units', () => {
  const params = (m: GPT) => m.namedParameters().map(([, p]) => p);
  const zc = zeroConfigOf({ zero_optimization: { stage: 3, stage3_param_persistence_threshold: 20 } });

  it('gives each module its own parameters, a tied weight to the common ancestor, small ones to the persistent unit', () => {
    const m = new GPT(TINY_GPT);
    const ps = params(m);
    const layout = planStage3(m, ps, ps.map((p) => p.numel), zc, 2, 0);
    const names = new Map(m.namedParameters().map(([n, p]) => [p, n]));
    const unitNames = layout.plan.units.map((u) => u.params.map((i) => names.get(ps[i]!)));
    expect(layout.persistentUnit).toBe(0);
    expect(unitNames[0]).toContain('transformer.h.0.ln_1.weight'); // 16 elements <= 20
    const home = (n: string) => layout.moduleOf[unitNames.findIndex((u) => u.includes(n))];
    expect(home('transformer.wte.weight')).toBe(m); // used by wte and lm_head: the GPT itself
    expect(home('transformer.h.0.attn.c_attn.weight')).toBe(m.transformer.h.items[0]!.attn.c_attn);
    registerExternalParameter(m.transformer.h.items[0]!.mlp.c_fc, m.transformer.wpe.weight);
    const moved = planStage3(m, ps, ps.map((p) => p.numel), zc, 2, 0);
    const wpeUnit = moved.plan.unitOf[ps.indexOf(m.transformer.wpe.weight)]!;
    expect(moved.moduleOf[wpeUnit]).toBe(m.transformer); // wpe and c_fc's common ancestor
  });

  it('zeroInit keeps only this rank\'s pieces and checks its config', () => {
    const cfg = { zero_optimization: { stage: 3, stage3_param_persistence_threshold: 0 } };
    const m = zeroInit(() => new GPT(TINY_GPT), { config: cfg, rank: 1, world: 2 });
    expect(m.parameters().every((p) => p.numel === 0)).toBe(true);
    expect(() => zeroInit(() => new GPT(TINY_GPT), { config: { zero_optimization: { stage: 2 } }, rank: 0, world: 2 })).toThrow(/stage 3/);
    expect(() => zeroInit(() => new GPT(TINY_GPT), { config: { zero_optimization: { stage: 3, zero_quantized_weights: true } }, rank: 0, world: 2 })).toThrow(DSConfigError);
  });

  it('zeroInit keeps slices in the config\'s training dtype, and an engine of another dtype refuses them', async () => {
    const bf16 = tinyConfig(1, { stage: 3 });
    const tracker = getRuntime().tracker;
    const before = tracker.liveBytes('cpu', 'parameters');
    const m = zeroInit(() => new GPT(TINY_GPT), { config: bf16, rank: 0, world: 1 });
    const sliced = tracker.liveBytes('cpu', 'parameters') - before;
    // 2 bytes per element: bf16, as the config enables (fp32 would be 4 per element).
    expect(sliced).toBe(2 * new GPT(TINY_GPT).numParameters());
    const fp32 = { ...bf16, bf16: { enabled: false } };
    await expect(initialize({ model: m, config: fp32, plugins: [zero()], dist: null, log: () => {} })).rejects.toThrow(
      /zeroInit kept bf16 slices \(the config it was given enables bf16\) but the engine trains f32 parameters: pass zeroInit the same ds_config as initialize/,
    );
  });
});

describe('stages 1-3 on one process', () => {
  it('follow stage 0, and stage 3 gathers whole weights on request', async () => {
    const train = async (z?: Record<string, unknown>) => {
      const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(2, z), plugins: [zero()], dist: null, log: () => {} });
      const losses = await trainSteps(engine, 0, 4);
      return { engine, losses };
    };
    const ref = await train();
    ref.engine.destroy();
    for (const stage of [1, 2, 3]) {
      const { engine, losses } = await train({ stage, reduce_bucket_size: 500, stage3_param_persistence_threshold: 20 });
      expect(engine.stateManager).toBeInstanceOf(stage === 3 ? Stage3State : Stage12State);
      losses.forEach((l, s) => expect(Math.abs(l - ref.losses[s]!) / ref.losses[s]!, `stage ${stage} step ${s}`).toBeLessThan(1e-3));
      if (stage === 3) {
        const wte = (engine.module as GPT).transformer.wte.weight;
        expect(wte.numel).toBe(0); // released between steps
        const shape = await gatheredParameters(engine.stateManager, () => [...wte.shape]);
        expect(shape).toEqual([TINY_GPT.vocabSize, TINY_GPT.nEmbd]);
        expect(wte.numel).toBe(0);
      }
      engine.destroy();
    }
  });
});

describe('fp16 loss scaling under ZeRO', () => {
  it('skips the same overflowing steps as stage 0 and trains on', async () => {
    const fp16 = (z?: Record<string, unknown>) => {
      const c = tinyConfig(2, z);
      delete c.bf16;
      return { ...c, fp16: { enabled: true, initial_scale_power: 24, loss_scale_window: 2 } };
    };
    const run = async (z?: Record<string, unknown>) => {
      const { engine } = await initialize({ model: new GPT(TINY_GPT), config: fp16(z), plugins: [zero()], dist: null, log: () => {} });
      const losses = await trainSteps(engine, 0, 8);
      const out = { losses, skipped: engine.skippedSteps, scale: engine.lossScale };
      engine.destroy();
      return out;
    };
    const ref = await run();
    expect(ref.skipped).toBeGreaterThan(0);
    for (const stage of [2, 3]) {
      const got = await run({ stage, reduce_bucket_size: 500, stage3_param_persistence_threshold: 20 });
      expect(got.skipped, `stage ${stage}`).toBe(ref.skipped);
      expect(got.scale).toBe(ref.scale);
      got.losses.forEach((l, s) => expect(Math.abs(l - ref.losses[s]!) / ref.losses[s]!, `stage ${stage} step ${s}`).toBeLessThan(1e-3));
    }
  });
});

describe('stage 3 model weights on save', () => {
  it('writes whole 16-bit weights with stage3_gather_16bit_weights_on_model_save, none without', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-zero-s3-'));
    try {
      for (const gather of [true, false]) {
        const { engine } = await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(2, { stage: 3, stage3_gather_16bit_weights_on_model_save: gather }), plugins: [zero()], dist: null, log: () => {} });
        await trainSteps(engine, 0, 2);
        const path = await engine.saveCheckpoint(join(dir, String(gather)), { tag: 't' });
        const weights = readSafetensors(join(path, 'model_states.safetensors')).tensors;
        if (!gather) expect(weights.size).toBe(0);
        else {
          const masters = await engine.stateManager.masterWeights();
          expect([...weights.keys()].sort()).toEqual([...masters.keys()].sort());
          expect(weights.get('transformer.wte.weight')!.shape).toEqual([TINY_GPT.vocabSize, TINY_GPT.nEmbd]);
        }
        engine.destroy();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('resuming a stage-0 checkpoint under ZeRO', () => {
  it('re-partitions core data-parallel state (masters and Adam moments) and trains on alike', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-zero-s0-'));
    try {
      const make = (z?: Record<string, unknown>) => initialize({ model: new GPT(TINY_GPT), config: tinyConfig(2, z), plugins: [zero()], dist: null, log: () => {} });
      const { engine: s0 } = await make();
      await trainSteps(s0, 0, 3);
      await s0.saveCheckpoint(dir, { tag: 's0' });
      const want = await trainSteps(s0, 3, 6);
      s0.destroy();
      for (const stage of [2, 3]) {
        const { engine } = await make({ stage, reduce_bucket_size: 500, stage3_param_persistence_threshold: 20 });
        await engine.loadCheckpoint(dir);
        expect(engine.globalSteps).toBe(3);
        const got = await trainSteps(engine, 3, 6);
        got.forEach((l, s) => expect(Math.abs(l - want[s]!) / want[s]!, `stage ${stage} step ${3 + s}`).toBeLessThan(1e-3));
        engine.destroy();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
