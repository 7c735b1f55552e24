import { describe, expect, it } from 'vitest';

import { batch, TINY_GPT, tinyConfig } from '../src/index.js';

describe('tiny GPT fixtures', () => {
  it('a global batch is the same whatever the split into rank rows', () => {
    const whole = batch(3, 1, 0, 4);
    const halves = [batch(3, 1, 0, 2), batch(3, 1, 2, 2)];
    expect(whole.ids.shape).toEqual([4, TINY_GPT.blockSize]);
    expect(whole.ids.toArray()).toEqual([...halves[0]!.ids.toArray(), ...halves[1]!.ids.toArray()]);
    expect(whole.targets.toArray()).toEqual([...halves[0]!.targets.toArray(), ...halves[1]!.targets.toArray()]);
    expect(Math.max(...whole.ids.toArray())).toBeLessThan(TINY_GPT.vocabSize);
  });

  it('tinyConfig adds the zero_optimization section only when given', () => {
    expect(tinyConfig(2)).not.toHaveProperty('zero_optimization');
    expect(tinyConfig(2, { stage: 3 })).toMatchObject({ train_micro_batch_size_per_gpu: 2, zero_optimization: { stage: 3 } });
  });
});
