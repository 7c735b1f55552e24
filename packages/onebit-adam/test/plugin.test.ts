// The plugin's config handling and the optimizer on one rank: DeepSpeed's keys and defaults, the
// combinations it refuses (ZeRO, AMSGrad, max_grad_norm) with its reasons, keys it ignores accepted
// only with the value that matches what it does; the warm-up is Adam without bias correction;
// exp_avg_mask keeps masked momentum at exactly zero; 0/1 Adam's variance-update schedule.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import { createRegistry, DSConfigError, initialize, type PluginContext } from '@ds/core';
import { createCpuKernels, GPT } from '@ds/tensor';

import { checkOnebitParams, OnebitAdam, onebitAdam, ZeroOneAdam } from '../src/index.js';

const kernels = createCpuKernels();

function fakeCtx(config: Record<string, unknown>): PluginContext {
  return { config, groups: { data: null }, log: () => {} } as unknown as PluginContext;
}

describe('config', () => {
  const factories = onebitAdam().contributes.optimizers!;

  it("fills DeepSpeed's defaults", () => {
    const p = checkOnebitParams('onebitadam', {});
    expect(p).toMatchObject({ lr: 1e-3, freeze_step: 100000, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, comm_backend_name: 'nccl', cuda_aware: false });
    expect(checkOnebitParams('OneBitLamb', {})).toMatchObject({ max_coeff: 10, min_coeff: 0.01, coeff_beta: 0.9, factor_max: 4, factor_min: 0.5, factor_threshold: 0.1 });
    expect(checkOnebitParams('ZeroOneAdam', {})).toMatchObject({ var_freeze_step: 100000, var_update_scaler: 16, local_step_scaler: 32678, local_step_clipper: 16 });
  });

  it('rejects every problem at once, each named with its key and fix', () => {
    const bad = () => checkOnebitParams('OneBitAdam', { max_grad_norm: 1, amsgrad: true, bias_correction: true, eps_inside_sqrt: true, cuda_aware: true, freeze_step: -1, frozen_step: 3 });
    expect(bad).toThrow(DSConfigError);
    const message = (() => {
      try {
        bad();
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(message).toMatch(/7 problem/);
    expect(message).toMatch(/max_grad_norm.*gradient_clipping/);
    expect(message).toMatch(/amsgrad.*AMSGrad/);
    expect(message).toMatch(/bias_correction.*never apply bias correction/);
    expect(message).toMatch(/eps_inside_sqrt.*outside the square root/);
    expect(message).toMatch(/cuda_aware.*no GPU buffers/);
    expect(message).toMatch(/freeze_step: must be an integer >= 0/);
    expect(message).toMatch(/frozen_step: is not a parameter of OneBitAdam \(allowed: .*freeze_step/);
  });

  it('rejects ZeRO stages >= 1 with DeepSpeed\'s reason', () => {
    for (const stage of [1, 2, 3]) {
      expect(() => factories.OneBitAdam!({}, { kernels }, fakeCtx({ optimizer: { type: 'OneBitAdam' }, zero_optimization: { stage } }))).toThrow(/not compatible with ZeRO.*reduce-scatter.*stage to 0/);
    }
  });

  it("maps comm_backend_name to the active backend with a one-line note", () => {
    const lines: string[] = [];
    const ctx = { config: { optimizer: { type: 'OneBitAdam' } }, groups: { data: { backend: 'cpu', size: 1 } }, log: (_: string, m: string) => lines.push(m) } as unknown as PluginContext;
    factories.OneBitAdam!({ comm_backend_name: 'nccl' }, { kernels }, ctx);
    factories.OneBitLamb!({ comm_backend_name: 'cpu' }, { kernels }, ctx);
    expect(lines).toEqual(["OneBitAdam: comm_backend_name 'nccl' maps to the active comm backend 'cpu' (the compressed all-reduce runs over the data-parallel group's all-to-all and all-gather)"]);
  });

  it('is found by initialize() from the config type, case-insensitively', async () => {
    const registry = createRegistry([onebitAdam()]);
    expect(registry.optimizer('onebitadam')).toBeDefined();
    const { engine, optimizer } = await initialize({
      model: new GPT({ vocabSize: 16, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8, seed: 1 }),
      config: { train_micro_batch_size_per_gpu: 1, optimizer: { type: 'onebitadam', params: { freeze_step: 10 } } },
      registry,
      dist: null,
      log: () => {},
    });
    expect(optimizer).toBeInstanceOf(OnebitAdam);
    expect(engine.stateManager.partitioned).toBe(true);
    engine.destroy();
  });
});

describe('OnebitAdam on one rank', () => {
  function slot(n: number, seed: number) {
    const master = Float32Array.from({ length: n }, (_, i) => Math.sin(i + seed));
    const grad = Float32Array.from({ length: n }, (_, i) => Math.cos(3 * i + seed));
    return { master, grad, gradDtype: 'f32' as const, group: 0 };
  }

  it('warms up as Adam without bias correction, then steps with the frozen variance', () => {
    const n = 37;
    const opt = new OnebitAdam({ kernels }, [{ lr: 0.01, weightDecay: 0.1 }], { betas: [0.9, 0.99], eps: 1e-8, freezeStep: 2 }, null);
    const s = slot(n, 1);
    const p = Float64Array.from(s.master);
    const m = new Float64Array(n), v = new Float64Array(n);
    for (let step = 1; step <= 4; step++) {
      s.grad.set(Float32Array.from({ length: n }, (_, i) => Math.cos(3 * i + step)));
      expect(opt.localGradients).toBe(step > 2);
      opt.step([s], { gradScale: 0.5 });
      for (let i = 0; i < n; i++) {
        const g = s.grad[i]! * 0.5;
        m[i] = 0.9 * m[i]! + 0.1 * g;
        if (step <= 2) v[i] = 0.99 * v[i]! + 0.01 * g * g;
        p[i] = p[i]! - 0.01 * (m[i]! / (Math.sqrt(v[i]!) + 1e-8) + 0.1 * p[i]!);
      }
      expectClose(s.master, p, { rtol: 1e-5, atol: 1e-6 }, `weights after step ${step}`);
    }
    expect(opt.localGradients).toBe(true);
  });

  it('keeps momentum masked by exp_avg_mask at exactly zero in the compressed phase', () => {
    const n = 16;
    const mask = Float32Array.from({ length: n }, (_, i) => (i < 4 ? 0 : 1));
    const opt = new OnebitAdam({ kernels }, [{ lr: 0.01, weightDecay: 0, exp_avg_mask: mask }], { betas: [0.9, 0.99], eps: 1e-8, freezeStep: 0 }, null);
    const s = slot(n, 2);
    opt.step([s], { gradScale: 1 });
    const m = opt.stateDict().slots[0]!.tensors.exp_avg!;
    expect(Array.from(m.subarray(0, 4), Math.abs)).toEqual([0, 0, 0, 0]);
    expect(m.subarray(4).every((x) => x !== 0)).toBe(true);
    opt.paramGroups[0]!.exp_avg_mask = new Float32Array(3);
    expect(() => opt.step([s], { gradScale: 1 })).toThrow(/exp_avg_mask must be a Float32Array of the slot's 16 elements/);
  });
});

describe('ZeroOneAdam on one rank', () => {
  it("all-reduces gradients only on variance-update steps, whose spacing doubles every var_update_scaler updates, until var_freeze_step", () => {
    const opt = new ZeroOneAdam({ kernels }, [{ lr: 0.01, weightDecay: 0 }], { betas: [0.9, 0.99], eps: 1e-8, varFreezeStep: 20, varUpdateScaler: 2, localStepScaler: 3, localStepClipper: 4 }, null);
    const n = 8;
    const s = { master: new Float32Array(n).fill(1), grad: new Float32Array(n).fill(0.5), gradDtype: 'f32' as const, group: 0 };
    const reduced: number[] = [];
    for (let step = 1; step <= 24; step++) {
      if (!opt.localGradients) reduced.push(step);
      opt.step([s], { gradScale: 1 });
    }
    // DeepSpeed's rule: a variance step is one where step % interval == 0, and the interval doubles
    // after var_update_scaler of them: 1, 2 (interval 1), 4, 6 (2), 8, 12 (4), 16 (8); none after
    // the freeze at step 20.
    expect(reduced).toEqual([1, 2, 4, 6, 8, 12, 16]);
    expect(opt.frozen).toBe(true);
    expect(s.master.every((x) => Number.isFinite(x) && x < 1)).toBe(true);
  });
});
