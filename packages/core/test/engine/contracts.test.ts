// initialize()'s contracts with plugins and the reduction path, each asserted by its effect: comm
// backends and attention kernels by name (unknown names fail naming what is registered), the
// topology's data degree (data_parallel_size is checked against it), the communication dtype, and
// the gradient-accumulation dtype at stage 0.
import { describe, expect, it } from 'vitest';

import { describeWorld, freePort, lastJson, withWorld } from '@ds-internal/test-kit';
import { TINY_GPT, trainSteps } from '@ds-internal/gpt-fixtures';
import { fromArray, GPT } from '@ds/tensor';

import { DSConfigError } from '../../src/errors.js';
import { initialize, resolveCommBackend } from '../../src/engine/initialize.js';
import { readCoreEnv } from '../../src/env.js';
import { createRegistry } from '../../src/plugin/registry.js';
import { thrown } from '../helpers/config.js';

const base = { train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 2, optimizer: { type: 'AdamW', params: { lr: 1e-2 } } };

async function rejected(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('comm backends by name', () => {
  it('registers core\'s cpu backend like a plugin\'s and names the package of an unregistered one', async () => {
    const registry = createRegistry();
    expect(registry.names('commBackends')).toEqual(['cpu']);
    expect(registry.plugins).toEqual([]);
    const env = readCoreEnv({});
    expect((await resolveCommBackend(registry, 'cpu', env)).name).toBe('cpu');
    const err = await rejected(resolveCommBackend(registry, 'mpi', env));
    expect(err).toBeInstanceOf(DSConfigError);
    expect(err.message).toBe("comm backend 'mpi' is not registered (registered: cpu); 'mpi' comes from @ds/comm-mpi: pnpm add @ds/comm-mpi, then initialize({ ..., plugins: [mpi()] })");
  });

  it('reads DS_COMM_BACKEND when initialize() joins the job, before any rendezvous', async () => {
    const env = { RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1', DS_COMM_BACKEND: 'nccl' };
    const err = await rejected(initialize({ model: new GPT(TINY_GPT), config: base, env, log: () => {} }));
    expect(err.message).toMatch(/^comm backend 'nccl' is not registered \(registered: cpu\); 'nccl' comes from @ds\/comm-nccl/);
  });
});

describe('attention kernels by name', () => {
  it('fails naming the registered kernels when a module asks for one nobody registered', async () => {
    const err = await rejected(initialize({ model: new GPT({ ...TINY_GPT, attentionKernel: 'sparse' }), config: base, dist: null, log: () => {} }));
    expect(err).toBeInstanceOf(DSConfigError);
    expect(err.message).toMatch(/^attention kernel 'sparse' is not registered \(registered: dense\)/);
  });

  it('refuses to run a module whose named kernel was never resolved', () => {
    const gpt = new GPT({ ...TINY_GPT, attentionKernel: 'sparse' });
    const ids = fromArray([0, 1], [1, 2], { dtype: 'i32' });
    expect(() => gpt.call(ids)).toThrow(/attention kernel 'sparse' comes from a plugin: pass the model to initialize\(\)/);
  });
});

describe('topology', () => {
  it('data_parallel_size must equal the data-parallel degree', async () => {
    const err = await rejected(initialize({ model: new GPT(TINY_GPT), config: { ...base, data_parallel_size: 2 }, dist: null, log: () => {} }));
    expect(thrown(() => {
      throw err;
    }, DSConfigError).message).toBe('data_parallel_size is 2, but the topology (pipe 1 x data 1 x model 1) over 1 rank(s) has a data-parallel degree of 1; remove the key or make it match');
    const ok = await initialize({ model: new GPT(TINY_GPT), config: { ...base, data_parallel_size: 1 }, dist: null, log: () => {} });
    expect(ok.engine.groups.topology.degrees).toEqual({ pipe: 1, data: 1, model: 1 });
    ok.engine.destroy();
  });

  it("an engine contribution's topology(model) fixes the degrees before the groups are built; a disagreeing option is named", async () => {
    // A pipeline-like engine that reads a stage count off the model (as @ds/pipeline does from a PipelineModule).
    const stagesOf = new WeakMap<object, number>();
    const engines = { staged: { appliesTo: () => false, create: () => Promise.reject(new Error('never built')), topology: (m: object) => (stagesOf.has(m) ? { pipe: stagesOf.get(m)! } : undefined) } };
    const plugin = { name: 'staged', package: '@ds-internal/staged', contributes: { engines } };
    const model = new GPT(TINY_GPT);
    stagesOf.set(model, 2);
    // Consulted: one process cannot hold 2 stages.
    expect((await rejected(initialize({ model, config: base, plugins: [plugin], dist: null, log: () => {} }))).message).toMatch(/1 ranks do not divide into 2 pipeline stage\(s\)/);
    const clash = await rejected(initialize({ model, config: base, plugins: [plugin], topology: { pipe: 1 }, dist: null, log: () => {} }));
    expect(clash).toBeInstanceOf(DSConfigError);
    expect(clash.message).toBe("initialize: topology.pipe is 1 but the model needs 2 (engine 'staged' of @ds-internal/staged); drop the option or make it 2");
    // A model the contribution does not claim keeps the default topology.
    const ok = await initialize({ model: new GPT(TINY_GPT), config: base, plugins: [plugin], dist: null, log: () => {} });
    expect(ok.engine.groups.topology.degrees).toEqual({ pipe: 1, data: 1, model: 1 });
    ok.engine.destroy();
  });
});

describe('data_types.grad_accum_dtype at stage 0', () => {
  it('bf16 keeps a bf16 gradient buffer (half the bytes of the fp32 default) and still trains', async () => {
    const bf16 = { ...base, bf16: { enabled: true } };
    const a = await initialize({ model: new GPT(TINY_GPT), config: bf16, dist: null, log: () => {} });
    const b = await initialize({ model: new GPT(TINY_GPT), config: { ...bf16, data_types: { grad_accum_dtype: 'bf16' } }, dist: null, log: () => {} });
    expect(b.engine.stateManager.modelStateBytes().gradients * 2).toBe(a.engine.stateManager.modelStateBytes().gradients);
    const [la, lb] = [await trainSteps(a.engine, 0, 6), await trainSteps(b.engine, 0, 6)];
    expect(lb[5]!).toBeLessThan(lb[0]!);
    // Not the same numbers: the accumulation rounds to bf16 between micro steps.
    expect(lb).not.toEqual(la);
    a.engine.destroy();
    b.engine.destroy();
    const err = await rejected(initialize({ model: new GPT(TINY_GPT), config: { ...base, data_types: { grad_accum_dtype: 'bf16' } }, dist: null, log: () => {} }));
    expect(err.message).toMatch(/grad_accum_dtype 'bf16' with fp32 parameters would round every gradient to 16 bits/);
  });
});

describe('communication_data_type on 2 ranks', () => {
  it('bf16 rounds the reduced gradients to bf16; the default keeps fp32', async () => {
    const w = await withWorld(2, new URL('./workers/comm-dtype.ts', import.meta.url), { timeoutMs: 60_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
    for (const r of w.ranks) {
      const out = lastJson<{ fp32: { bf16Exact: boolean }; bf16: { bf16Exact: boolean }; close: boolean }>(r.stdout);
      expect(out.fp32.bf16Exact).toBe(false);
      expect(out.bf16.bf16Exact).toBe(true);
      // The same average, to bf16's precision.
      expect(out.close).toBe(true);
    }
  }, 90_000);
});

describe("DeepSpeed's args", () => {
  it('--deepspeed_config in the command line names the config; both or neither fail with the reason', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const file = join(mkdtempSync(join(tmpdir(), 'ds-args-')), 'ds_config.json');
    writeFileSync(file, JSON.stringify({ ...base, gradient_accumulation_steps: 3 }));
    for (const args of [['--deepspeed', '--deepspeed_config', file], [`--deepspeed_config=${file}`, '--lr', '1'], { deepspeed_config: file }]) {
      const { engine } = await initialize({ model: new GPT(TINY_GPT), args, dist: null, log: () => {} });
      expect(engine.gradientAccumulationSteps()).toBe(3);
      engine.destroy();
    }
    expect((await rejected(initialize({ model: new GPT(TINY_GPT), config: base, args: ['--deepspeed_config', file], dist: null, log: () => {} }))).message).toMatch(/a config was given twice, as config and as --deepspeed_config/);
    expect((await rejected(initialize({ model: new GPT(TINY_GPT), args: ['--lr', '1'], dist: null, log: () => {} }))).message).toMatch(/no ds_config: pass config .* or args with --deepspeed_config FILE/);
    expect((await rejected(initialize({ model: new GPT(TINY_GPT), args: ['--deepspeed_config'], dist: null, log: () => {} }))).message).toMatch(/--deepspeed_config in args needs a file/);
  });
});

describe('modelParameters (DeepSpeed model_parameters)', () => {
  it('gives each group its lr and weight decay; a parameter outside every group is named', async () => {
    const model = new GPT(TINY_GPT);
    const named = model.namedParameters();
    const frozenByLr = named.filter(([n]) => /bias|ln_/.test(n)).map(([, p]) => p);
    const rest = named.filter(([n]) => !/bias|ln_/.test(n)).map(([, p]) => p);
    const before = frozenByLr.map((p) => [...(p.data() as Float32Array)]);
    const { engine, optimizer } = await initialize({ model, config: base, modelParameters: [{ params: [...new Set(rest)] }, { params: frozenByLr, lr: 0, weightDecay: 0 }], dist: null, log: () => {} });
    expect(optimizer.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual([[1e-2, 0], [0, 0]]);
    const restBefore = [...(rest[0]!.data() as Float32Array)];
    await trainSteps(engine, 0, 3);
    // lr 0: biases and norms did not move; the others did.
    frozenByLr.forEach((p, i) => expect([...(p.data() as Float32Array)]).toEqual(before[i]));
    expect([...(rest[0]!.data() as Float32Array)]).not.toEqual(restBefore);
    engine.destroy();
    const err = await rejected(initialize({ model: new GPT(TINY_GPT), config: base, modelParameters: [{ params: [] }], dist: null, log: () => {} }));
    expect(err.message).toMatch(/trainable parameter\(s\) are in no modelParameters group \(.*\); add them to a group or set requiresGrad = false/);
  });
});

describe("the optimizer's comm_backend_name", () => {
  it('picks a registered backend of that name, and the active one (cpu) when none is registered', async () => {
    const { createCoreOptimizer } = await import('../../src/optim/factory.js');
    const { cpuBackend } = await import('../../src/comm/backends/cpu.js');
    const made: string[] = [];
    const plugin = (withNccl: boolean) => ({
      name: 'fake-1bit',
      package: '@x/fake-1bit',
      contributes: {
        optimizers: { FakeOneBit: (_p: Readonly<Record<string, unknown>>, optCtx: Parameters<typeof createCoreOptimizer>[0]) => createCoreOptimizer(optCtx, 'AdamW', { lr: 1e-2 })! },
        ...(withNccl ? { commBackends: { nccl: () => { made.push('nccl'); return { ...cpuBackend(), name: 'nccl' }; } } } : {}),
      },
    });
    const config = { ...base, optimizer: { type: 'FakeOneBit', params: { comm_backend_name: 'nccl' } } };
    for (const withNccl of [false, true]) {
      const env = { RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(await freePort()) };
      const { engine } = await initialize({ model: new GPT(TINY_GPT), config, plugins: [plugin(withNccl)], env, log: () => {} });
      expect(made).toEqual(withNccl ? ['nccl'] : []);
      engine.destroy();
      await engine.dist!.destroy();
    }
  });
});
