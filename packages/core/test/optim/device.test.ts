// The optimizers on a device whose memory JavaScript cannot read ('sim', run by the host kernels)
// against the same optimizers on host arrays. The same kernels run on both sides, so weights, 16-bit
// copies, state and Lamb's trust ratios must agree exactly; any update written as a JavaScript loop
// would fail here, since a sim array has no elements to index. Also: state dicts of sim state (and
// loading them on either side), what happens without a transfer, host arrays handed to a sim
// optimizer, scratch allocated once, and 16-bit gradients stepping like the f32 ones.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';
import {
  createReferenceKernels,
  createSimDevice,
  DeviceArray,
  DSDeviceError,
  f32ToBf16,
  f32ToF16,
  Runtime,
  type DeviceBackend,
  type FloatDType,
  type KernelTable,
} from '@ds/tensor';

import { createCoreOptimizer } from '../../src/optim/factory.js';
import type { Lamb } from '../../src/optim/lamb.js';
import type { Optimizer, OptimizerContext, OptimizerSlot, OptimizerStateDict } from '../../src/optim/types.js';
import { thrown } from '../helpers/config.js';

const EXACT = { rtol: 0, atol: 0 };
const SIZES = [300, 1000];
/** Group 1 has its own learning rate and weight decay. */
const GROUPS = [{}, { lr: 0.03, weightDecay: 0.05 }];

type Case = [type: string, params: Record<string, unknown>];
const CASES: Case[] = [
  ['AdamW', { lr: 0.1, weight_decay: 0.01 }],
  ['Adam', { lr: 0.1, weight_decay: 0.01, adam_w_mode: false }],
  ['SGD', { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 0.01 }],
  ['SGD', { lr: 0.05, momentum: 0.5, nesterov: true }],
  ['SGD', { lr: 0.05, weight_decay: 0.02 }],
  ['Lion', { lr: 0.01, weight_decay: 0.1 }],
  ['Lamb', { lr: 0.02, weight_decay: 0.01 }],
  ['Lamb', { lr: 0.02, eps_inside_sqrt: true, bias_correction: false, min_coeff: 0.5 }],
];

/** A deterministic stream of numbers in [-1, 1). */
function stream(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/** Each step's gradients as f32 values, one array per slot. */
function gradients(steps: number, seed: number): Float32Array[][] {
  const next = stream(seed);
  return Array.from({ length: steps }, () => SIZES.map((n) => Float32Array.from({ length: n }, () => next() * 0.1)));
}

function to16(dtype: FloatDType, x: Float32Array): Uint16Array {
  return Uint16Array.from(x, dtype === 'f16' ? f32ToF16 : f32ToBf16);
}

/** A sim device and the optimizer context over it, counting what it allocates. */
function simSide(table: 'native' | 'reference') {
  const device: DeviceBackend = table === 'native' ? new Runtime().device('sim') : createSimDevice({ hostKernels: createReferenceKernels() });
  const allocs: string[] = [];
  const put = <T extends Float32Array | Uint16Array>(src: T): DeviceArray<T> => {
    const a = new DeviceArray<T>(device.alloc(src.byteLength), src instanceof Float32Array ? 'f32' : 'u16', 0, src.length);
    device.copyFromHost(src, a);
    return a;
  };
  const get = (a: DeviceArray<Float32Array> | DeviceArray<Uint16Array>): Float32Array | Uint16Array => {
    const out = a.kind === 'f32' ? new Float32Array(a.length) : new Uint16Array(a.length);
    device.copyToHost(a, out);
    return out;
  };
  const ctx: OptimizerContext = {
    kernels: device.kernels,
    allocState: (n, name) => {
      allocs.push(name);
      return new DeviceArray<Float32Array>(device.alloc(n * 4), 'f32', 0, n);
    },
    transfer: { toHost: (a) => get(a as DeviceArray<Float32Array>) as Float32Array, fromHost: (src, dst) => device.copyFromHost(src, dst as DeviceArray) },
  };
  return { device, ctx, put, get, allocs };
}

function hostKernels(table: 'native' | 'reference'): KernelTable {
  return table === 'native' ? new Runtime().kernels('cpu') : createReferenceKernels();
}

/** Initial weights of the slots. */
function weights(): Float32Array[] {
  const next = stream(7);
  return SIZES.map((n) => Float32Array.from({ length: n }, () => next()));
}

interface Run {
  opt: Optimizer;
  /** Steps once with f32 gradients given as host values (each side converts and places them). */
  step(grads: Float32Array[], gradDtype: FloatDType, gradScale: number): void;
  /** Host copies of the weights and of their 16-bit copies. */
  masters(): Float32Array[];
  out16s(): Uint16Array[];
  setMasters(values: readonly Float32Array[]): void;
}

/** An optimizer over host arrays. */
function hostRun(kernels: KernelTable, type: string, params: Record<string, unknown>, out16Dtype: 'bf16' | 'f16'): Run {
  const opt = createCoreOptimizer({ kernels }, type, params, GROUPS)!;
  const masters = weights();
  const out16 = SIZES.map((n) => new Uint16Array(n));
  return {
    opt,
    step(grads, gradDtype, gradScale) {
      const slots = masters.map((master, i): OptimizerSlot => ({
        master,
        grad: gradDtype === 'f32' ? grads[i]!.slice() : to16(gradDtype, grads[i]!),
        gradDtype,
        group: i,
        out16: out16[i]!,
        out16Dtype,
      }));
      opt.step(slots, { gradScale });
    },
    masters: () => masters.map((m) => m.slice()),
    out16s: () => out16.map((m) => m.slice()),
    setMasters: (values) => values.forEach((v, i) => masters[i]!.set(v)),
  };
}

/** The same optimizer with weights, gradients, copies and state in sim memory. */
function simRun(side: ReturnType<typeof simSide>, type: string, params: Record<string, unknown>, out16Dtype: 'bf16' | 'f16'): Run {
  const opt = createCoreOptimizer(side.ctx, type, params, GROUPS)!;
  const masters = weights().map(side.put);
  const out16 = SIZES.map((n) => side.put(new Uint16Array(n)));
  return {
    opt,
    step(grads, gradDtype, gradScale) {
      const slots = masters.map((master, i): OptimizerSlot => ({
        master,
        grad: gradDtype === 'f32' ? side.put(grads[i]!.slice()) : side.put(to16(gradDtype, grads[i]!)),
        gradDtype,
        group: i,
        out16: out16[i]!,
        out16Dtype,
      }));
      opt.step(slots, { gradScale });
    },
    masters: () => masters.map((m) => side.get(m) as Float32Array),
    out16s: () => out16.map((m) => side.get(m) as Uint16Array),
    setMasters: (values) => values.forEach((v, i) => side.device.copyFromHost(v, masters[i]!)),
  };
}

function expectSameState(actual: OptimizerStateDict, expected: OptimizerStateDict, what: string): void {
  expect(actual.slots.map((s) => s.step), `${what}: steps`).toEqual(expected.slots.map((s) => s.step));
  expected.slots.forEach((s, i) => {
    expect(Object.keys(actual.slots[i]!.tensors).sort(), `${what}: slot ${i} names`).toEqual(Object.keys(s.tensors).sort());
    for (const [name, t] of Object.entries(s.tensors)) {
      const got = actual.slots[i]!.tensors[name]!;
      expect(got, `${what}: slot ${i} '${name}' is a host array`).toBeInstanceOf(Float32Array);
      expectClose(got, t, EXACT, `${what}: slot ${i} '${name}'`);
    }
  });
}

function expectSameRun(actual: Run, expected: Run, what: string): void {
  actual.masters().forEach((m, i) => expectClose(m, expected.masters()[i]!, EXACT, `${what}: weights of slot ${i}`));
  actual.out16s().forEach((m, i) => expectClose(m, expected.out16s()[i]!, EXACT, `${what}: 16-bit copy of slot ${i}`));
  expectSameState(actual.opt.stateDict(), expected.opt.stateDict(), what);
  if (actual.opt.type === 'Lamb') expect((actual.opt as Lamb).lambCoeffs, `${what}: trust ratios`).toEqual((expected.opt as Lamb).lambCoeffs);
}

describe.each(['native', 'reference'] as const)('optimizers on sim equal the same optimizers on host arrays (%s kernels)', (table) => {
  it.each(CASES.flatMap(([type, params]) => (['f32', 'bf16', 'f16'] as const).map((gradDtype): [string, Record<string, unknown>, FloatDType] => [type, params, gradDtype])))(
    '%s %j, %s gradients',
    (type, params, gradDtype) => {
      const out16Dtype = gradDtype === 'f16' ? 'f16' : 'bf16';
      const host = hostRun(hostKernels(table), type, params, out16Dtype);
      const sim = simRun(simSide(table), type, params, out16Dtype);
      for (const grads of gradients(4, 11)) {
        host.step(grads, gradDtype, 0.5);
        sim.step(grads, gradDtype, 0.5);
      }
      // The weights moved (the comparison is not between two untouched copies).
      expect(host.masters()[0]).not.toEqual(weights()[0]);
      expectSameRun(sim, host, `${type} on sim`);
    },
  );
});

describe('state dicts of sim state', () => {
  it.each(CASES)('%s %j: saved from sim, loaded on sim and on host, every copy continues exactly like the original', (type, params) => {
    const [before, after] = [gradients(2, 21), gradients(2, 22)];
    const original = simRun(simSide('native'), type, params, 'bf16');
    const host = hostRun(hostKernels('native'), type, params, 'bf16');
    for (const grads of before) {
      original.step(grads, 'bf16', 1);
      host.step(grads, 'bf16', 1);
    }
    const saved = original.opt.stateDict();
    expectSameState(saved, host.opt.stateDict(), `${type} state dict`);

    // Into a fresh sim optimizer (new state arrays, filled through the transfer) and a fresh host one,
    // each given the original's weights.
    const onSim = simRun(simSide('native'), type, params, 'bf16');
    const onHost = hostRun(hostKernels('native'), type, params, 'bf16');
    for (const run of [onSim, onHost]) run.setMasters(original.masters());
    onSim.opt.loadStateDict(saved);
    onHost.opt.loadStateDict(saved);
    for (const grads of after) for (const run of [original, onSim, onHost]) run.step(grads, 'bf16', 1);
    expectSameRun(onSim, original, `${type} loaded on sim`);
    expectSameRun(onHost, original, `${type} loaded on host`);
  });

  it('loading into an optimizer that has state reuses its arrays', () => {
    const side = simSide('native');
    const run = simRun(side, 'AdamW', { lr: 0.1 }, 'bf16');
    run.step(gradients(1, 31)[0]!, 'f32', 1);
    const count = side.allocs.length;
    const saved = run.opt.stateDict();
    run.step(gradients(1, 32)[0]!, 'f32', 1);
    run.opt.loadStateDict(saved);
    expect(side.allocs.length).toBe(count);
    expectSameState(run.opt.stateDict(), saved, 'reloaded');
  });

  it('without a transfer, saving or loading device state is a DSDeviceError naming the slot and the missing field', () => {
    const side = simSide('native');
    const { transfer: _unused, ...noTransfer } = side.ctx;
    const opt = createCoreOptimizer(noTransfer, 'SGD', { momentum: 0.9 })!;
    const master = side.put(new Float32Array(8));
    opt.step([{ master, grad: side.put(new Float32Array(8).fill(1)), gradDtype: 'f32', group: 0 }], { gradScale: 1 });
    expect(thrown(() => opt.stateDict(), DSDeviceError).message).toMatch(
      /^SGD\.stateDict: state 'momentum_buffer' of slot 0 lives on device 'sim', and the optimizer context has no transfer; pass OptimizerContext\.transfer/,
    );
    const fresh = createCoreOptimizer(noTransfer, 'SGD', { momentum: 0.9 })!;
    const state: OptimizerStateDict = { type: 'SGD', paramGroups: fresh.paramGroups, slots: [{ step: 1, tensors: { momentum_buffer: new Float32Array(8) } }] };
    expect(thrown(() => fresh.loadStateDict(state), DSDeviceError).message).toMatch(/^SGD\.loadStateDict: state 'momentum_buffer' of slot 0 lives on device 'sim'/);
  });
});

describe('mixing devices', () => {
  it.each(CASES)('%s %j: host weights handed to a sim optimizer fail with the sim kernel table\'s error', (type, params) => {
    const side = simSide('native');
    const opt = createCoreOptimizer(side.ctx, type, params)!;
    const slot: OptimizerSlot = { master: new Float32Array(8), grad: side.put(new Float32Array(8)), gradDtype: 'f32', group: 0 };
    expect(thrown(() => opt.step([slot], { gradScale: 1 }), DSDeviceError).message).toMatch(/host memory \(a Float32Array\) passed to a sim kernel/);
  });
});

describe('scratch arrays', () => {
  it.each([
    ['SGD', { momentum: 0.9 }, ['SGD scratch d']],
    ['Lion', {}, ['Lion scratch c']],
    ['Lamb', {}, ['Lamb scratch work', 'Lamb scratch update']],
    ['AdamW', {}, []],
  ] as const)('%s: allocated for the longest slot on the first step and kept, grown only for a longer slot', (type, params, names) => {
    const side = simSide('native');
    const scratch: [string, number][] = [];
    const ctx: OptimizerContext = {
      ...side.ctx,
      allocScratch: (n, name) => {
        scratch.push([name, n]);
        return new DeviceArray<Float32Array>(side.device.alloc(n * 4), 'f32', 0, n);
      },
    };
    const opt = createCoreOptimizer(ctx, type, params, GROUPS)!;
    const slots = SIZES.map((n, i): OptimizerSlot => ({ master: side.put(new Float32Array(n).fill(1)), grad: side.put(new Float32Array(n).fill(0.5)), gradDtype: 'f32', group: i }));
    for (let k = 0; k < 3; k++) opt.step(slots, { gradScale: 1 });
    const longest = Math.max(...SIZES);
    expect(scratch).toEqual(names.map((name) => [name, longest]));
    // State went through allocState, scratch never did.
    expect(side.allocs.every((name) => !name.includes('scratch'))).toBe(true);
    // A longer slot, stepped as a sub-group of its own: the scratch grows once.
    const big = { master: side.put(new Float32Array(2 * longest).fill(1)), grad: side.put(new Float32Array(2 * longest)), gradDtype: 'f32' as const, group: 0 };
    opt.step([big], { gradScale: 1, firstSlot: SIZES.length });
    opt.step([big], { gradScale: 1, firstSlot: SIZES.length });
    expect(scratch).toEqual([...names.map((name) => [name, longest]), ...names.map((name) => [name, 2 * longest])]);
  });

  it('without allocScratch, scratch comes from allocState under its own name', () => {
    const side = simSide('native');
    const opt = createCoreOptimizer(side.ctx, 'Lion', {})!;
    opt.step([{ master: side.put(new Float32Array(4)), grad: side.put(new Float32Array(4)), gradDtype: 'f32', group: 0 }], { gradScale: 1 });
    expect(side.allocs.sort()).toEqual(['Lion scratch c', 'exp_avg']);
  });
});
