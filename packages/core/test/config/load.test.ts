import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

import { problemsOf } from '../helpers/config.js';
import { loadConfig } from '../../src/config/index.js';
import { createRegistry, type Plugin } from '../../src/plugin/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}


describe('defaults', () => {
  it('fills DeepSpeed code defaults', () => {
    const { config } = loadConfig({ train_batch_size: 8 });
    expect(config.fp16).toEqual({
      enabled: false,
      auto_cast: false,
      loss_scale: 0,
      initial_scale_power: 16,
      loss_scale_window: 1000,
      hysteresis: 2,
      consecutive_hysteresis: false,
      min_loss_scale: 1,
      fp16_master_weights_and_grads: false,
    });
    expect([config.gradient_clipping, config.steps_per_print, config.gradient_predivide_factor, config.prescale_gradients]).toEqual([0, null, 1, false]);
    expect(config.checkpoint.tag_validation).toBe('Warn');
    expect(config.comms_logger).toEqual({ enabled: false, verbose: false, prof_all: true, debug: false, prof_ops: [] });
    expect(config.tensorboard).toEqual({ enabled: false, output_path: '', job_name: 'DeepSpeedJobName' });
  });

  it('normalises case-insensitive values and optimizer type names', () => {
    const { config } = loadConfig({
      train_batch_size: 8,
      checkpoint: { tag_validation: 'fail' },
      communication_data_type: 'BF16',
      optimizer: { type: 'adamw', params: { lr: 3e-4 } },
      scheduler: { type: 'WarmupDecayLR', params: { total_num_steps: 100 } },
    });
    expect(config.checkpoint.tag_validation).toBe('Fail');
    expect(config.communication_data_type).toBe('bf16');
    expect(config.optimizer).toEqual({ type: 'AdamW', params: { lr: 3e-4 }, legacy_fusion: false });
    expect(config.scheduler?.params).toMatchObject({ total_num_steps: 100, warmup_num_steps: 1000, warmup_max_lr: 0.001, warmup_type: 'log' });
  });

  it('maps the legacy bfloat16 key and zero_optimization boolean in one place, with warnings', () => {
    const { config, warnings } = loadConfig({ train_batch_size: 8, bfloat16: { enabled: true }, zero_optimization: false });
    expect(config.bf16.enabled).toBe(true);
    expect(config.zero_optimization).toEqual({ stage: 0 });
    expect(warnings.map((w) => w.path)).toEqual(['bfloat16', 'zero_optimization']);
  });
});

describe('problems, all at once', () => {
  it('reports five mistakes in one DSConfigError', () => {
    const problems = problemsOf(() =>
      loadConfig({
        train_batch_size: 0,
        // comms_logger is strict in DeepSpeed too (pydantic); a typo inside fp16 would only warn.
        comms_logger: { enabled: true, verbos: true },
        optimizer: { type: 'Adamm', params: { lr: 1e-3 } },
        scheduler: { type: 'WarmupLR', params: { warmup_num_steps: -5 } },
        gradient_clipping: 'auto',
      }),
    );
    expect(problems.map((p) => p.path)).toEqual([
      'gradient_clipping',
      'train_batch_size',
      'comms_logger.verbos',
      'optimizer.type',
      'scheduler.params.warmup_num_steps',
    ]);
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(byPath['comms_logger.verbos']).toMatchObject({ suggestion: 'verbose', value: true });
    expect(byPath['optimizer.type']).toMatchObject({ suggestion: 'Adam', value: 'Adamm' });
    expect(byPath['train_batch_size']!.message).toBe('must be >= 1, got 0');
    expect(byPath['scheduler.params.warmup_num_steps']).toMatchObject({ value: -5, message: 'must be >= 0, got -5' });
    expect(byPath['gradient_clipping']!.message).toMatch(/"auto" is a Hugging Face Trainer placeholder.*\{ autoValues: \{ 'gradient_clipping': <value> \} \} to initialize\(\) or loadConfig\(\)/);
  });

  it('the error message lists each problem with its key path', () => {
    try {
      loadConfig({ train_batch_size: 8, fp16: { enabled: true }, bf16: { enabled: true }, optimizer: { type: 'Adam', params: { max_grad_norm: 1 } } });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toBe(
        'ds_config has 2 problems:\n' +
          "  - optimizer.params.max_grad_norm: 'max_grad_norm' is not supported as an optimizer parameter; use the top-level 'gradient_clipping' key instead\n" +
          '  - bf16.enabled: bfloat16 and fp16 modes cannot be simultaneously enabled; set one of fp16.enabled / bf16.enabled to false',
      );
    }
  });

  it('resolves "auto" from the autoValues option', () => {
    const { config } = loadConfig({ train_batch_size: 'auto', gradient_clipping: 'auto' }, { autoValues: { train_batch_size: 64, gradient_clipping: 1.0 } });
    expect([config.train_batch_size, config.gradient_clipping]).toEqual([64, 1]);
    const viaFn = loadConfig({ train_micro_batch_size_per_gpu: 'auto' }, { autoValues: (path) => (path === 'train_micro_batch_size_per_gpu' ? 2 : undefined) });
    expect(viaFn.config.train_micro_batch_size_per_gpu).toBe(2);
  });

  it('checks fp16_master_weights_and_grads against the ZeRO stage', () => {
    const [p] = problemsOf(() => loadConfig({ train_batch_size: 8, fp16: { enabled: true, fp16_master_weights_and_grads: true } }));
    expect(p!.message).toMatch(/only supported with ZeRO Stage 2/);
  });
});

describe('unknown and unbuilt keys', () => {
  it('warns on an unknown top-level key, naming the nearest valid key (bp16 -> bf16)', () => {
    const { warnings, config } = loadConfig({ train_batch_size: 8, bp16: { enabled: true } });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ path: 'bp16', suggestion: 'bf16' });
    expect(config.bf16.enabled).toBe(false);
    expect('bp16' in config).toBe(false);
  });

  it('makes unknown keys errors under strict', () => {
    const [p] = problemsOf(() => loadConfig({ train_batch_size: 8, gradient_acumulation_steps: 2 }, { strict: true }));
    expect(p).toMatchObject({ path: 'gradient_acumulation_steps', suggestion: 'gradient_accumulation_steps' });
  });

  it('rejects recognised but unbuilt sections by name when enabled, and accepts them switched off', () => {
    const problems = problemsOf(() =>
      loadConfig({
        train_batch_size: 8,
        eigenvalue: { enabled: true },
        compression_training: { weight_quantization: { shared_parameters: { enabled: true } } },
        elasticity: { enabled: true, max_train_batch_size: 100 },
        progressive_layer_drop: { enabled: true },
      }),
    );
    expect(problems.map((p) => p.path)).toEqual(['eigenvalue', 'compression_training', 'elasticity', 'progressive_layer_drop']);
    expect(problems[0]!.message).toMatch(/'eigenvalue' \(eigenvalue computation\) is a DeepSpeed feature this TypeScript port has not built/);
    const { warnings } = loadConfig({ train_batch_size: 8, eigenvalue: { enabled: false }, autotuning: { enabled: false } });
    expect(warnings).toEqual([]);
  });

  it('activation_checkpointing: rejects the switches that need unbuilt features, accepts partition_activations and cpu_checkpointing', () => {
    const problems = problemsOf(() =>
      loadConfig({ train_batch_size: 8, activation_checkpointing: { partition_activations: true, contiguous_memory_optimization: true, profile: true, cpu_checkpointing: true } }),
    );
    expect(problems.map((p) => p.path)).toEqual(['activation_checkpointing.contiguous_memory_optimization', 'activation_checkpointing.profile']);
    expect(problems[0]!.message).toMatch(/contiguous buffers .* not built/);
    const { config, warnings } = loadConfig({
      train_batch_size: 8,
      activation_checkpointing: { partition_activations: true, cpu_checkpointing: true, synchronize_checkpoint_boundary: true, number_checkpoints: 4 },
    });
    expect(config.activation_checkpointing).toMatchObject({ partition_activations: true, cpu_checkpointing: true, number_checkpoints: 4, profile: false });
    // Their effect depends on the job (model-parallel degree, device): the engine warns where there is none.
    expect(warnings.map((w) => w.path)).toEqual(['activation_checkpointing.synchronize_checkpoint_boundary']);
  });
});

describe('plugins', () => {
  it('names the package and the registering line for a section whose plugin is missing', () => {
    const problems = problemsOf(() => loadConfig({ train_batch_size: 8, zero_optimization: { stage: 2 }, optimizer: { type: 'OneBitAdam' } }));
    expect(problems.map((p) => p.message)).toEqual([
      'optimizer.type OneBitAdam needs @ds/onebit-adam (1-bit Adam, 0/1 Adam and 1-bit LAMB): pnpm add @ds/onebit-adam, then initialize({ ..., plugins: [onebitAdam()] })',
      'zero_optimization.stage 2 needs @ds/zero (ZeRO stages 1-3): pnpm add @ds/zero, then initialize({ ..., plugins: [zero()] })',
    ]);
    expect(loadConfig({ train_batch_size: 8, zero_optimization: { stage: 0 } }).config.zero_optimization).toEqual({ stage: 0 });
  });

  it("validates a registered plugin's section with its schema and reports its problems with the others", () => {
    const zeroLike: Plugin = {
      name: 'zero',
      package: '@ds/zero',
      configSections: { zero_optimization: z.strictObject({ stage: z.number().int().min(0).max(3).default(0), overlap_comm: z.boolean().nullable().default(null) }) },
      contributes: {},
    };
    const registry = createRegistry([zeroLike]);
    expect(loadConfig({ train_batch_size: 8, zero_optimization: { stage: 2 } }, { registry }).config.zero_optimization).toEqual({ stage: 2, overlap_comm: null });
    const problems = problemsOf(() => loadConfig({ train_batch_size: 8, zero_optimization: { stage: 4, overlap_com: true }, fp16: { enabled: 1 } }, { registry }));
    expect(problems.map((p) => [p.path, p.suggestion])).toEqual([
      ['zero_optimization.stage', undefined],
      ['zero_optimization.overlap_com', 'overlap_comm'],
      ['fp16.enabled', undefined],
    ]);
  });

  it('accepts optimizer types that registered plugins contribute, case-insensitively', () => {
    const registry = createRegistry([{ name: 'onebit-adam', package: '@ds/onebit-adam', contributes: { optimizers: { OneBitAdam: () => ({}) as never } } }]);
    expect(loadConfig({ train_batch_size: 8, optimizer: { type: 'onebitadam', params: { freeze_step: 10 } } }, { registry }).config.optimizer).toEqual({
      type: 'OneBitAdam',
      params: { freeze_step: 10 },
      legacy_fusion: false,
    });
  });
});

describe('inputs', () => {
  it('reads hjson files: comments, quoteless strings, no root braces', () => {
    const path = file(
      'hjson.json',
      ['# a comment', 'train_batch_size: 16', '// another', 'optimizer: {', '  type: AdamW', '  params: { lr: 1e-4 }', '}', '/* block */ bf16: { enabled: true }'].join('\n'),
    );
    const loaded = loadConfig(path);
    expect(loaded.source).toEqual({ kind: 'file', path });
    expect(loaded.config.optimizer).toMatchObject({ type: 'AdamW', params: { lr: 1e-4 } });
    expect(loaded.config.bf16.enabled).toBe(true);
  });

  it('rejects duplicate keys at every level, all reported together', () => {
    const path = file('dup.json', '{"train_batch_size": 8, "fp16": {"enabled": true, "enabled": false}, "train_batch_size": 16}');
    const problems = problemsOf(() => loadConfig(path));
    expect(problems.map((p) => p.path)).toEqual(['train_batch_size', 'fp16.enabled']);
    expect(problems[0]!.message).toMatch(/duplicate key 'train_batch_size' \(2 times\)/);
  });

  it('decodes DeepSpeed URL-safe base64 JSON', () => {
    const json = JSON.stringify({ train_batch_size: 12, optimizer: { type: 'Lion', params: { lr: 1e-4, betas: [0.9, 0.99] } } });
    const b64 = Buffer.from(json).toString('base64url');
    const loaded = loadConfig(b64);
    expect(loaded.source.kind).toBe('base64');
    expect(loaded.config.train_batch_size).toBe(12);
    expect(loadConfig(Buffer.from(json).toString('base64')).config.optimizer?.type).toBe('Lion');
  });

  it('explains a missing file, a non-object root and a parse error', () => {
    expect(problemsOf(() => loadConfig(join(dir, 'missing.json')))[0]!.message).toMatch(/no such file/);
    expect(problemsOf(() => loadConfig(file('arr.json', '[1, 2]')))[0]!.message).toMatch(/top level must be an object/);
    expect(problemsOf(() => loadConfig(file('bad.json', '{"a": [1, 2}')))[0]!.message).toMatch(/not valid JSON\/hjson/);
  });

  it('says when the path is a directory', () => {
    expect(problemsOf(() => loadConfig(dir))[0]!.message).toMatch(/is a directory/);
  });

  it('passes each warning to onWarning as well as returning it', () => {
    const seen: string[] = [];
    const { warnings } = loadConfig({ train_batch_size: 8, bfloat16: {}, vocabulary_size: 50257 }, { onWarning: (w) => seen.push(w.path) });
    expect(seen).toEqual(['bfloat16', 'vocabulary_size']);
    expect(warnings.map((w) => w.path)).toEqual(seen);
  });

  it('does not modify the object it is given', () => {
    const input = { train_batch_size: 8, bfloat16: { enabled: true } };
    loadConfig(input);
    expect(input).toEqual({ train_batch_size: 8, bfloat16: { enabled: true } });
  });
});

describe('plugin requirements are met by contribution, not by name', () => {
  it('accepts a third-party plugin that owns the section or contributes the offload tier', () => {
    const registry = createRegistry([
      { name: 'my-zero', package: '@acme/zero', configSections: { zero_optimization: z.looseObject({ stage: z.number() }) }, contributes: { offloadTiers: { cpu: () => ({}) as never } } },
    ]);
    const loaded = loadConfig({ train_batch_size: 8, zero_optimization: { stage: 2, offload_optimizer: { device: 'cpu' } } }, { registry });
    expect(loaded.plugins.map((p) => [p.path, p.registered])).toEqual([
      ['zero_optimization.stage', true],
      ['zero_optimization.offload_optimizer.device', true],
    ]);
    const [p] = problemsOf(() => loadConfig({ train_batch_size: 8, zero_optimization: { stage: 2, offload_param: { device: 'nvme' } } }, { registry }));
    expect(p!.message).toMatch(/^zero_optimization.offload_param.device nvme needs @ds\/offload-nvme/);
  });
});
