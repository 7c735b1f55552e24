import { describe, expect, it } from 'vitest';

import { problemsOf } from '../helpers/config.js';
import { loadConfig, resolveBatch } from '../../src/config/index.js';


describe('resolveBatch: DeepSpeed inference rules', () => {
  const cases: Array<[string, Parameters<typeof resolveBatch>[0], number, [number, number, number]]> = [
    ['all three given', { train_batch_size: 64, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 4 }, 4, [64, 4, 4]],
    ['batch + micro -> gas', { train_batch_size: 64, train_micro_batch_size_per_gpu: 4 }, 4, [64, 4, 4]],
    ['batch + gas -> micro', { train_batch_size: 64, gradient_accumulation_steps: 2 }, 4, [64, 8, 2]],
    ['micro + gas -> batch', { train_micro_batch_size_per_gpu: 3, gradient_accumulation_steps: 5 }, 2, [30, 3, 5]],
    ['batch only -> gas 1', { train_batch_size: 32 }, 8, [32, 4, 1]],
    ['micro only -> gas 1', { train_micro_batch_size_per_gpu: 6 }, 3, [18, 6, 1]],
    ['nulls count as absent', { train_batch_size: 16, train_micro_batch_size_per_gpu: null, gradient_accumulation_steps: null }, 1, [16, 16, 1]],
  ];
  for (const [name, keys, ws, [tb, mb, gas]] of cases) {
    it(name, () => {
      const b = resolveBatch(keys, ws);
      expect([b.trainBatchSize, b.trainMicroBatchSizePerGpu, b.gradientAccumulationSteps, b.worldSize]).toEqual([tb, mb, gas, ws]);
    });
  }

  it('names what it inferred', () => {
    expect(resolveBatch({ train_batch_size: 32 }, 8).inferred).toEqual(['gradient_accumulation_steps', 'train_micro_batch_size_per_gpu']);
  });
});

describe('resolveBatch: errors', () => {
  it('needs train_batch_size or train_micro_batch_size_per_gpu', () => {
    const [p] = problemsOf(() => resolveBatch({ gradient_accumulation_steps: 4 }, 2));
    expect(p!.path).toBe('train_batch_size');
    expect(p!.message).toMatch(/Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided/);
  });

  it('reports a triad that does not multiply out, with the numbers and a fix', () => {
    const [p] = problemsOf(() => resolveBatch({ train_batch_size: 30, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2 }, 4));
    expect(p!.message).toMatch(/30 != 4 \* 2 \* 4; set train_batch_size to 32/);
  });

  it('reports integer division that leaves the invariant broken', () => {
    // 50 // 4 // 4 = 3 accumulation steps, and 4 * 3 * 4 = 48 != 50
    const [p] = problemsOf(() => resolveBatch({ train_batch_size: 50, train_micro_batch_size_per_gpu: 4 }, 4));
    expect(p!.message).toMatch(/50 != 4 \* 3 \* 4/);
  });

  it('reports a value that divides down to 0', () => {
    const [p] = problemsOf(() => resolveBatch({ train_batch_size: 4 }, 8));
    expect(p!.path).toBe('train_micro_batch_size_per_gpu');
    expect(p!.message).toMatch(/works out to 0 \(it has to be greater than 0\)/);
  });

  it('rejects non-positive or fractional values and a bad world size', () => {
    const problems = problemsOf(() => resolveBatch({ train_batch_size: 0, train_micro_batch_size_per_gpu: 2.5 }, 1));
    expect(problems.map((p) => p.path)).toEqual(['train_batch_size', 'train_micro_batch_size_per_gpu']);
    expect(problemsOf(() => resolveBatch({ train_batch_size: 8 }, 0))[0]!.path).toBe('worldSize');
  });

  it('is checked by loadConfig when a world size is given, alongside the other problems', () => {
    const problems = problemsOf(() => loadConfig({ train_batch_size: 30, train_micro_batch_size_per_gpu: 4, gradient_accumulation_steps: 2, gradient_clipping: -1 }, { worldSize: 4 }));
    expect(problems.map((p) => p.path)).toEqual(['gradient_clipping', 'train_batch_size']);
    expect(loadConfig({ train_batch_size: 32 }, { worldSize: 4 }).batch?.trainMicroBatchSizePerGpu).toBe(8);
  });
});
