// The engine-side effects of config keys that used to be accepted and ignored: each test fails if the
// effect is removed (packages/core/CONFIG.md points here).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';

import { batch, TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { fromArray, getRuntime, GPT, Linear, Module, sum, tidy, type Tensor } from '@ds/tensor';

import { DSConfigError } from '../../src/errors.js';
import { initialize } from '../../src/engine/initialize.js';

function config(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 2, optimizer: { type: 'AdamW', params: { lr: 1e-2 } }, ...extra };
}

async function engineWith(extra: Record<string, unknown>, model: Module = new GPT({ ...TINY_GPT, nLayer: 3 })) {
  const logs: string[] = [];
  const { engine } = await initialize({ model, config: config(extra), dist: null, log: (m) => logs.push(m) });
  return { engine, logs };
}

/** Activation bytes the graph holds between one forward and its backward (on the engine's device, and on the host). */
async function heldAfterForward(extra: Record<string, unknown>, device = 'cpu'): Promise<{ held: number; heldOnHost: number; losses: number[]; logs: string[] }> {
  const { engine, logs } = await engineWith(extra, new GPT({ ...TINY_GPT, nLayer: 3, device }));
  const tracker = getRuntime().tracker;
  const { ids, targets } = batch(0, 0, 0, 2, 8, 32, device);
  const before = tracker.liveBytes(device, 'activations');
  const beforeHost = tracker.liveBytes('cpu', 'activations');
  const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
  const held = tracker.liveBytes(device, 'activations') - before;
  const heldOnHost = tracker.liveBytes('cpu', 'activations') - beforeHost;
  await engine.backward(loss);
  await engine.step();
  loss.dispose();
  ids.dispose();
  targets.dispose();
  const losses = await trainSteps(engine, 1, 4);
  engine.destroy();
  return { held, heldOnHost, losses, logs };
}

describe('activation_checkpointing', () => {
  it('present: the first number_checkpoints blocks recompute in backward (less held, same losses); absent: none', async () => {
    const plain = await heldAfterForward({});
    const two = await heldAfterForward({ activation_checkpointing: { number_checkpoints: 2 } });
    const all = await heldAfterForward({ activation_checkpointing: {} });
    expect(two.held).toBeLessThan(plain.held);
    expect(all.held).toBeLessThan(two.held);
    expect(two.losses).toEqual(plain.losses);
    expect(all.losses).toEqual(plain.losses);
  });

  it('marks the layers it names, logs them, and destroy() unmarks them', async () => {
    const model = new GPT({ ...TINY_GPT, nLayer: 3 });
    const { engine, logs } = await engineWith({ activation_checkpointing: { number_checkpoints: 2 } }, model);
    expect(model.transformer.h.items.map((b) => b.activationCheckpointing)).toEqual([true, true, false]);
    expect(logs).toContain('activation checkpointing: 2 of 3 layers recompute their activations in backward (transformer.h.0, transformer.h.1); checkpointed inputs kept whole');
    engine.destroy();
    expect(model.modules().some((m) => m.activationCheckpointing)).toBe(false);
  });

  it('cpu_checkpointing: on a device the checkpointed inputs wait in host memory (same losses); on the cpu device it warns that it has no effect', async () => {
    const plain = await heldAfterForward({ activation_checkpointing: {} }, 'sim');
    const host = await heldAfterForward({ activation_checkpointing: { cpu_checkpointing: true } }, 'sim');
    expect(plain.heldOnHost).toBe(0);
    // The three blocks' inputs ([2, 8, 16] f32 each) moved from the device to the host.
    expect(host.heldOnHost).toBe(3 * 2 * 8 * 16 * 4);
    expect(host.held).toBe(plain.held - host.heldOnHost);
    expect(host.losses).toEqual(plain.losses);
    expect(host.logs.some((l) => l.endsWith('checkpointed kept in host memory'))).toBe(true);
    const onCpu = await heldAfterForward({ activation_checkpointing: { cpu_checkpointing: true } });
    expect(onCpu.heldOnHost).toBe(onCpu.held);
    expect(onCpu.logs).toContain('warning: activation_checkpointing.cpu_checkpointing has no effect on the cpu device: checkpointed inputs are already in host memory');
  });

  it('partition_activations: warns that it has no effect when the model-parallel degree is 1', async () => {
    const { logs, losses } = await heldAfterForward({ activation_checkpointing: { partition_activations: true } });
    expect(logs.filter((l) => l.startsWith('warning: activation_checkpointing.partition_activations'))).toEqual([
      'warning: activation_checkpointing.partition_activations has no effect: it splits checkpointed inputs over the model-parallel group, and this job\'s model-parallel degree is 1',
    ]);
    expect(losses).toEqual((await heldAfterForward({ activation_checkpointing: {} })).losses);
  });

  it('rejects a model without layers to checkpoint, by name', async () => {
    await expect(engineWith({ activation_checkpointing: {} }, new Linear(4, 4))).rejects.toThrow(DSConfigError);
    await expect(engineWith({ activation_checkpointing: {} }, new Linear(4, 4))).rejects.toThrow(/activation_checkpointing: Linear has no layers to checkpoint/);
  });
});

/** A model that records the dtypes its forward receives. */
class Recorder extends Module<[Tensor, Tensor[], { z: Tensor }, Tensor], { loss: Tensor }> {
  readonly lin = this.registerModule('lin', new Linear(2, 2));
  seen: string[] = [];
  forward(x: Tensor, list: Tensor[], obj: { z: Tensor }, ids: Tensor): { loss: Tensor } {
    this.seen = [x.dtype, list[0]!.dtype, obj.z.dtype, ids.dtype];
    return { loss: sum(this.lin.call(x.to('f32'))) };
  }
}

describe('fp16.auto_cast', () => {
  it("casts forward's floating-point inputs (also in lists and objects) to f16 and leaves integers alone", async () => {
    const seenWith = async (fp16: Record<string, unknown>) => {
      const model = new Recorder();
      const { engine } = await engineWith({ fp16 }, model);
      tidy(() => {
        const f = (a: number, b: number) => fromArray([a, b], [1, 2]);
        engine.forward(f(1, 2), [f(3, 4)], { z: f(5, 6) }, fromArray([1, 2], [1, 2], { dtype: 'i32' }));
      });
      engine.destroy();
      return model.seen;
    };
    expect(await seenWith({ enabled: true, auto_cast: true })).toEqual(['f16', 'f16', 'f16', 'i32']);
    expect(await seenWith({ enabled: true })).toEqual(['f32', 'f32', 'f32', 'i32']);
  });
});

describe('memory_breakdown', () => {
  it("logs DeepSpeed's see_memory_usage around forward, backward and step, with the tracker's categories", async () => {
    const { engine, logs } = await engineWith({ memory_breakdown: true });
    await trainSteps(engine, 0, 1);
    const messages = logs.filter((l) => l.startsWith('Engine '));
    expect(messages.slice(0, 6)).toEqual(['Engine before forward', 'Engine after forward', 'Engine before backward', 'Engine after backward', 'Engine before step', 'Engine after step']);
    const usage = logs[logs.indexOf('Engine after backward') + 1]!;
    expect(usage).toMatch(/^MA [\d.]+ GB Max_MA [\d.]+ GB \(.*\) \| parameters [\d.]+ [KMG]?B, gradients [\d.]+ [KMG]?B, optimizer_states .*, activations .*/);
    engine.destroy();
    const off = await engineWith({});
    await trainSteps(off.engine, 0, 1);
    expect(off.logs.some((l) => l.startsWith('Engine '))).toBe(false);
    off.engine.destroy();
  });
});

describe('dump_state', () => {
  it("prints the engine's state once at start-up, sorted, as DeepSpeed's print_configuration", async () => {
    const { engine, logs } = await engineWith({ dump_state: true });
    const start = logs.indexOf('DeepSpeedEngine:');
    expect(start).toBeGreaterThanOrEqual(0);
    const lines = logs.slice(start + 1).filter((l) => l.startsWith('  '));
    expect(lines).toContain('  train_batch_size ............. 4');
    expect(lines).toContain('  optimizer .................... AdamW');
    const names = lines.map((l) => l.trim().split(' ')[0]!);
    expect(names).toEqual([...names].sort());
    engine.destroy();
    expect((await engineWith({})).logs).not.toContain('DeepSpeedEngine:');
  });
});

describe('timers.throughput', () => {
  it("logs DeepSpeed's samples/s line every steps_per_print steps after two warm-up steps; enabled: false turns it off", async () => {
    const { engine, logs } = await engineWith({ steps_per_print: 2 });
    await trainSteps(engine, 0, 6);
    const lines = logs.filter((l) => l.startsWith('epoch='));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^epoch=0\/micro_step=8\/global_step=4, RunningAvgSamplesPerSec=[\d.e+]+, CurrSamplesPerSec=[\d.e+]+, MemAllocated=[\d.]+GB, MaxMemAllocated=[\d.]+GB$/);
    expect(lines[1]).toMatch(/^epoch=0\/micro_step=12\/global_step=6, /);
    expect(logs.filter((l) => l.startsWith('step='))).toHaveLength(3);
    engine.destroy();
    const off = await engineWith({ steps_per_print: 2, timers: { throughput: { enabled: false } } });
    await trainSteps(off.engine, 0, 6);
    expect(off.logs.some((l) => l.startsWith('epoch='))).toBe(false);
    off.engine.destroy();
  });
});

describe('gradient_clipping', () => {
  it('scales the step so that the gradient norm is at most the clip value (SGD, lr 1: the update is the clipped gradient)', async () => {
    const updateNorm = async (clip: number) => {
      const model = new GPT(TINY_GPT);
      const { engine } = await engineWith({ gradient_accumulation_steps: 1, gradient_clipping: clip, optimizer: { type: 'SGD', params: { lr: 1 } } }, model);
      const before = model.parameters().map((p) => p.toArray());
      await trainSteps(engine, 0, 1);
      const after = model.parameters().map((p) => p.toArray());
      const norm = Math.sqrt(before.reduce((s, b, i) => s + b.reduce((t, v, j) => t + (after[i]![j]! - v) ** 2, 0), 0));
      const gradNorm = engine.getGlobalGradNorm();
      engine.destroy();
      return { norm, gradNorm };
    };
    const free = await updateNorm(0);
    const clipped = await updateNorm(0.01);
    expect(free.norm / free.gradNorm).toBeCloseTo(1, 4);
    expect(clipped.gradNorm).toBeGreaterThan(0.1);
    expect(clipped.norm).toBeCloseTo(0.01, 4);
  });
});

describe('wall_clock_breakdown', () => {
  it('logs the forward/backward/step timers with the steps_per_print line', async () => {
    const { engine, logs } = await engineWith({ steps_per_print: 1, wall_clock_breakdown: true });
    await trainSteps(engine, 0, 1);
    expect(logs.some((l) => /^forward: [\d.]+ ms total, [\d.]+ ms avg \| backward: .* \| step: /.test(l))).toBe(true);
    engine.destroy();
    const off = await engineWith({ steps_per_print: 1 });
    await trainSteps(off.engine, 0, 1);
    expect(off.logs.some((l) => l.startsWith('forward: '))).toBe(false);
    off.engine.destroy();
  });
});

describe('checkpoint.tag_validation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ds-tag-check-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = async (mode: string) => {
    const world = await withWorld(2, new URL('./workers/tag-check.ts', import.meta.url), { env: { DS_TEST_TAG_VALIDATION: mode, DS_TEST_DIR: join(dir, mode) }, timeoutMs: 120_000 });
    expect(world.timedOut, describeWorld(world)).toBe(false);
    return world.ranks.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()!) as { rank: number; error: string | null; warnings: string[] });
  };

  it('different tags on different ranks: Fail throws on every rank, Warn logs on rank 0, Ignore says nothing', async () => {
    for (const r of await run('Fail')) expect(r.error).toMatch(/DSCheckpointError: checkpoint tag 't\d' is not the same on every rank/);
    const warn = await run('Warn');
    expect(warn[0]).toMatchObject({ error: null, warnings: ["warning: checkpoint tag 't0' is not the same on every rank; pass the same tag (or none) to saveCheckpoint on all ranks"] });
    for (const r of await run('Ignore')) expect(r.warnings).toEqual([]);
  }, 180_000);
});
