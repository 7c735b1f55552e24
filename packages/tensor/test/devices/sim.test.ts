// The sim device: memory JavaScript cannot read, run by the cpu kernels. These tests are the guard
// that keeps device bytes out of JavaScript: every typed view of a sim tensor must throw, and a model
// trained on sim must match the same model trained on cpu exactly (the same kernels run on both).
import { describe, expect, it } from 'vitest';
import { arange, fromArray, randint, randn, zeros } from '../../src/create.js';
import { DeviceArray } from '../../src/devices/device-array.js';
import { createSimDevice } from '../../src/devices/sim.js';
import { toHandle } from '../../src/dlpack.js';
import { DSDeviceError } from '../../src/errors.js';
import { GPT } from '../../src/nn/gpt.js';
import { Linear } from '../../src/nn/layers.js';
import { add, matmul, sum } from '../../src/ops/index.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { autocast, Runtime, withRuntime } from '../../src/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { TinyAdamW, trainStep } from '../helpers/train.js';

const cfg = { vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0.1, seed: 5 };

describe('sim device', () => {
  it('refuses every JavaScript view of its bytes, naming the device and the copy to make', () => {
    const t = fromArray([1, 2, 3, 4], [2, 2], { device: 'sim' });
    expect(t.device).toBe('sim');
    expect(() => t.data()).toThrow(DSDeviceError);
    expect(() => t.data()).toThrow(/lives on device 'sim'.*toArray\(\).*\.to\('cpu'\)/);
    expect(() => t.storageArray()).toThrow(DSDeviceError);
    expect(() => t.storage.buffer).toThrow(/device 'sim', whose memory JavaScript cannot read/);
    const op = t.operand();
    expect(op).toBeInstanceOf(DeviceArray);
    // A DeviceArray has no elements to index and no set(): the type says so, and so does run time.
    expect((op as unknown as Record<number, unknown>)[0]).toBeUndefined();
    expect('set' in op).toBe(false);
    expect(toHandle(t).buffer).toBeNull();
    expect(toHandle(t).address).not.toBeNull();
  });

  it('copies explicitly across the boundary and reads values with toArray()', () => {
    const host = fromArray([1.5, -2, 3.25, 8], [2, 2]);
    const dev = host.to('sim');
    expect(dev.device).toBe('sim');
    expect(dev.toArray()).toEqual([1.5, -2, 3.25, 8]);
    expect(dev.transpose(0, 1).toArray()).toEqual([1.5, 3.25, -2, 8]);
    const back = dev.to('cpu');
    expect(Array.from(back.data())).toEqual([1.5, -2, 3.25, 8]);
    for (const dtype of ['bf16', 'f16', 'i32', 'u8'] as const) {
      expect(fromArray([1, 2, 3], [3], { dtype, device: 'sim' }).toArray()).toEqual([1, 2, 3]);
    }
    expect(arange(5, { dtype: 'i32', device: 'sim' }).toArray()).toEqual([0, 1, 2, 3, 4]);
  });

  it('refuses a host array handed to a sim kernel and mixed-device ops', () => {
    const rt = new Runtime();
    const k = rt.kernels('sim');
    const dev = withRuntime(rt, () => zeros([4], { device: 'sim' }));
    expect(() => k.copy(new Float32Array(4), dev.operand(), 4)).toThrow(/host memory \(a Float32Array\) passed to a sim kernel/);
    expect(() => withRuntime(rt, () => add(dev, zeros([4])))).toThrow(/operands on different devices/);
    expect(() => rt.kernels('cpu').copy(dev.operand(), new Float32Array(4), 4)).toThrow(/lives on device 'sim'/);
  });

  it('counts its memory per device in the tracker', () => {
    const rt = new Runtime();
    withRuntime(rt, () => {
      const before = rt.tracker.liveBytes('cpu');
      const t = zeros([1000], { device: 'sim', category: 'parameters' });
      expect(rt.tracker.liveBytes('sim')).toBe(4000);
      expect(rt.tracker.liveBytes('sim', 'parameters')).toBe(4000);
      expect(rt.tracker.liveBytes('cpu')).toBe(before);
      t.dispose();
      expect(rt.tracker.liveBytes('sim')).toBe(0);
    });
  });

  it('runs ops and their gradients with results equal to the cpu', () => {
    const run = (device: string) => {
      const a = randn([3, 5], { seed: 1, device, requiresGrad: true });
      const b = randn([5, 4], { seed: 2, device, requiresGrad: true });
      const y = sum(matmul(a, b));
      y.backward();
      return [y.toArray(), a.grad!.toArray(), b.grad!.toArray()];
    };
    expect(run('sim')).toEqual(run('cpu'));
  });

  it('moves a module with Module.to(device), keeping the parameter objects', () => {
    const lin = new Linear(4, 3);
    const params = lin.parameters();
    const w = lin.weight.toArray();
    lin.to('sim');
    expect(lin.parameters()).toEqual(params);
    expect(lin.weight.device).toBe('sim');
    expect(lin.weight.toArray()).toEqual(w);
    const direct = new Linear(4, 3, { device: 'sim' });
    expect(direct.weight.device).toBe('sim');
    expect(direct.weight.toArray()).toEqual(w);
  });

  for (const mode of [null, 'bf16'] as const) {
    it(`trains the GPT (${mode ?? 'f32'}, dropout) for 10 steps with losses equal to the cpu's`, () => {
      const train = (device: string) => {
        const rt = new Runtime();
        return withRuntime(rt, () => {
          const gpt = new GPT({ ...cfg, device });
          const opt = new TinyAdamW(gpt.parameters());
          const ids = randint([2, 8], 16, { seed: 2, device }).keep();
          const tg = randint([2, 8], 16, { seed: 3, device }).keep();
          const losses: number[] = [];
          for (let s = 0; s < 10; s++) losses.push(trainStep(gpt, opt, () => autocast(mode, () => gpt.call(ids, tg).loss!)));
          const weights = gpt.parameters().map((p) => p.toArray());
          return { losses, weights, live: rt.tracker.liveBytes(device, 'activations') };
        });
      };
      const cpu = train('cpu');
      const sim = train('sim');
      expect(sim.losses).toEqual(cpu.losses);
      expect(sim.weights).toEqual(cpu.weights);
      expect(sim.live).toBe(0);
      expect(sim.losses[9]!).toBeLessThan(sim.losses[0]!);
    });
  }

  it('can run on the reference kernels (createSimDevice({ hostKernels }))', () => {
    const rt = new Runtime({ kernels: createReferenceKernels() });
    rt.useDevice(createSimDevice({ hostKernels: createReferenceKernels() }));
    withRuntime(rt, () => {
      const x = fromArray([1, 2, 3], [3], { device: 'sim' });
      expect(add(x, x).toArray()).toEqual([2, 4, 6]);
      expect(rt.device('sim').describe()).toMatch(/reference kernels/);
    });
  });

  it('checks token ids from device memory through an explicit copy', () => {
    const gpt = new GPT({ ...cfg, dropout: 0, device: 'sim' });
    const bad = fromArray([0, 99], [1, 2], { dtype: 'i32', device: 'sim' });
    expect(() => gpt.call(bad)).toThrow(/index 99 at position 1/);
    expect(Tensor.empty([2], 'f32', { device: 'sim' }).device).toBe('sim');
  });
});
