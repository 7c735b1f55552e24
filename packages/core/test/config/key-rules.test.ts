// "No key without effect": every core key this port does not act on is rejected by name when set
// (DeepSpeed would act on it), or accepted with a one-line warning (DeepSpeed's own effect is none,
// or none on the cpu device); keys DeepSpeed reads from plain dicts are not errors here either.
// The lists below are written out, not read from KEY_RULES, so removing a rule fails a test.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

import { problemsOf } from '../helpers/config.js';
import { attachConfigNotes, loadConfig } from '../../src/config/index.js';
import { createRegistry } from '../../src/plugin/index.js';

/** A config with `value` at the dotted `path`. */
function withKey(path: string, value: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const config: Record<string, unknown> = { train_batch_size: 8, ...structuredClone(extra) };
  const parts = path.split('.');
  let at = config;
  for (const p of parts.slice(0, -1)) at = (at[p] ??= {}) as Record<string, unknown>;
  at[parts[parts.length - 1]!] = value;
  return config;
}

const REJECTED: [string, unknown, RegExp][] = [
  ['checkpoint.load_universal', true, /universal format .* is not built; checkpoints of this port load on any number of data-parallel ranks/],
  ['checkpoint.use_node_local_storage', true, /node-local disk, which is not built: .* must be shared by all nodes; remove the key/],
  ['activation_checkpointing.contiguous_memory_optimization', true, /contiguous buffers \(one slot per layer\), which is not built .*; set it to false/],
  ['activation_checkpointing.profile', true, /profiling is not built/],
];

const INERT: [string, unknown, RegExp, Record<string, unknown>?][] = [
  ['fp16.auto_cast', true, /only when fp16.enabled is true/],
  ['fp16.fp16_master_weights_and_grads', true, /only when fp16.enabled is true/],
  ['bf16.immediate_grad_update', true, /how gradients always accumulate here/, { bf16: { enabled: true } }],
  ['disable_allgather', true, /nothing in DeepSpeed reads it/],
  ['seq_parallel_communication_data_type', 'bf16', /sequence parallelism .* is not built/],
  ['use_data_before_expert_parallelism', true, /mixture-of-experts/],
  ['zero_force_ds_cpu_optimizer', false, /only when ZeRO-Offload runs a client optimizer/],
  ['optimizer.legacy_fusion', true, /unscale in their own step/, { optimizer: { type: 'Adam', params: {} } }],
  ['timers.throughput.synchronized', false, /kernels are synchronous/],
  ['checkpoint.parallel_write.pipeline_stage', true, /pipeline engine/],
  ['activation_checkpointing.synchronize_checkpoint_boundary', true, /cpu kernels are synchronous/],
];

describe('keys set to what this port does not act on', () => {
  it.each(REJECTED)('%s: rejected by name when set, accepted at its default', (path, value, why) => {
    const problems = problemsOf(() => loadConfig(withKey(path, value)));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path, value });
    expect(problems[0]!.message).toMatch(new RegExp(`^'${path.replace(/\./g, '\\.')}' `));
    expect(problems[0]!.message).toMatch(why);
    expect(loadConfig(withKey(path, false)).warnings).toEqual([]);
  });

  it.each(INERT)('%s: accepted with a one-line warning saying it has no effect', (path, value, why, extra) => {
    const { warnings } = loadConfig(withKey(path, value, extra));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ path, value });
    expect(warnings[0]!.message).toMatch(/has no effect/);
    expect(warnings[0]!.message).toMatch(why);
    expect(warnings[0]!.message).not.toMatch(/\n/);
  });

  it('fp16.auto_cast and fp16_master_weights_and_grads are no longer inert once fp16 is on', () => {
    expect(loadConfig(withKey('fp16.auto_cast', true, { fp16: { enabled: true } })).warnings).toEqual([]);
    const [p] = problemsOf(() => loadConfig({ train_batch_size: 8, fp16: { enabled: true, fp16_master_weights_and_grads: true }, zero_optimization: { stage: 2 } }));
    expect(p).toMatchObject({ path: 'fp16.fp16_master_weights_and_grads' });
    expect(p!.message).toMatch(/ZeRO-Offload's DeepSpeedCPUAdam .* which is not built; set it to false/);
  });

  it("spells seq_parallel_communication_data_type as DeepSpeed does; the old spelling is an unknown key", () => {
    expect(loadConfig({ train_batch_size: 8 }).config.seq_parallel_communication_data_type).toBe('fp32');
    const { warnings } = loadConfig({ train_batch_size: 8, seq_parallel_comm_data_type: 'fp32' });
    expect(warnings[0]).toMatchObject({ path: 'seq_parallel_comm_data_type', suggestion: 'seq_parallel_communication_data_type' });
  });
});

describe('keys DeepSpeed accepts are not errors', () => {
  it("fp16's loss-scale keys inside bf16 (as DeepSpeed's own test configs write them) warn that they have no effect", () => {
    const { config, warnings } = loadConfig({ train_batch_size: 8, bf16: { enabled: true, loss_scale: 0, initial_scale_power: 16, hysteresis: 2 } });
    expect(config.bf16).toEqual({ enabled: true, immediate_grad_update: false });
    expect(warnings.map((w) => w.path)).toEqual(['bf16.loss_scale', 'bf16.initial_scale_power', 'bf16.hysteresis']);
    expect(warnings[0]!.message).toBe("'bf16.loss_scale' has no effect: it is an fp16 key (bf16 trains without loss scaling); DeepSpeed ignores it inside bf16 too");
  });

  it('any unknown key in a section DeepSpeed reads as a plain dict warns with the nearest key; strict makes it an error', () => {
    const raw = {
      train_batch_size: 8,
      fp16: { enabled: true, hysterisis: 2 },
      optimizer: { type: 'Adam', params: {}, note: 'x' },
      scheduler: { type: 'WarmupLR', params: {}, note: 'x' },
      activation_checkpointing: { number_checkpoints: 1, cpu_offload: false },
      checkpoint: { tag_validation: 'Warn', writer: {}, parallel_write: { pipeline_stage: false, decoupled: true } },
      data_types: { param_dtype: 'bf16' },
      timers: { other: {} },
    };
    const { config, warnings } = loadConfig(raw);
    expect(warnings.map((w) => w.path)).toEqual([
      'fp16.hysterisis',
      'optimizer.note',
      'scheduler.note',
      'activation_checkpointing.cpu_offload',
      'checkpoint.parallel_write.decoupled',
      'checkpoint.writer',
      'data_types.param_dtype',
      'timers.other',
    ]);
    expect(warnings[0]).toMatchObject({ suggestion: 'hysteresis' });
    expect(warnings[0]!.message).toBe("unknown key 'hysterisis' in 'fp16' has no effect (DeepSpeed reads 'fp16' as a plain dict and ignores it); did you mean 'hysteresis'?");
    expect(config.fp16.hysteresis).toBe(2);
    expect(config.checkpoint.parallel_write).toEqual({ pipeline_stage: false });
    const problems = problemsOf(() => loadConfig(raw, { strict: true }));
    expect(problems.map((p) => p.path)).toContain('fp16.hysterisis');
    expect(problems).toHaveLength(8);
  });

  it('sections DeepSpeed validates strictly (pydantic) still reject unknown keys', () => {
    const problems = problemsOf(() =>
      loadConfig({ train_batch_size: 8, comms_logger: { enabled: true, verbos: true }, tensorboard: { enabeld: true }, timers: { throughput: { enable: true } } }),
    );
    expect(problems.map((p) => p.path)).toEqual(['comms_logger.verbos', 'tensorboard.enabeld', 'timers.throughput.enable']);
  });

  it('a value error inside a loose section is still an error after its unknown keys are set aside', () => {
    const problems = problemsOf(() => loadConfig({ train_batch_size: 8, fp16: { enabled: 'yes', note: 1 } }));
    expect(problems.map((p) => p.path)).toEqual(['fp16.enabled']);
  });
});

describe('notes a plugin schema attaches to its section', () => {
  it('come back as warnings under the section key', () => {
    const registry = createRegistry();
    const schema = z.object({ knob: z.boolean().default(true) }).transform((c) => attachConfigNotes({ ...c }, c.knob ? [] : [{ path: 'knob', value: false, message: "'knob' has no effect here" }]));
    registry.use({ name: 'noted', package: 'noted-plugin', configSections: { noted: schema }, contributes: {} });
    const { warnings, config } = loadConfig({ train_batch_size: 8, noted: { knob: false } }, { registry });
    expect(warnings).toEqual([{ path: 'noted.knob', value: false, message: "'knob' has no effect here" }]);
    expect(JSON.stringify(config.noted)).toBe('{"knob":false}');
    expect(loadConfig({ train_batch_size: 8, noted: {} }, { registry }).warnings).toEqual([]);
  });
});
