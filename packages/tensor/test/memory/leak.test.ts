// Leaks are bugs: 50 training steps of a tiny GPT, live bytes identical after every step.
import { describe, expect, it } from 'vitest';
import { randint } from '../../src/create.js';
import { GPT } from '../../src/nn/gpt.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { autocast, Runtime, withRuntime } from '../../src/runtime.js';
import { TinyAdamW, trainStep } from '../helpers/train.js';

describe('memory over training steps', () => {
  for (const mode of [null, 'bf16'] as const) {
    it(`50 steps (${mode ?? 'f32'}, dropout, checkpointing on odd steps) return to the same live bytes`, () => {
      const rt = new Runtime({ kernels: createReferenceKernels() });
      withRuntime(rt, () => {
        const gpt = new GPT({ vocabSize: 16, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, dropout: 0.1, seed: 1 });
        const opt = new TinyAdamW(gpt.parameters());
        const ids = randint([2, 8], 16, { seed: 2 }).keep();
        const tg = randint([2, 8], 16, { seed: 3 }).keep();
        const live: number[] = [];
        const counts: number[] = [];
        const losses: number[] = [];
        for (let s = 0; s < 50; s++) {
          (gpt.config as { checkpointActivations?: boolean }).checkpointActivations = s % 2 === 1;
          losses.push(trainStep(gpt, opt, () => autocast(mode, () => gpt.call(ids, tg).loss!)));
          live.push(rt.tracker.liveBytes('cpu'));
          counts.push(rt.tracker.liveCount);
        }
        expect(new Set(live).size, `live bytes per step: ${live.slice(0, 5).join(', ')}...`).toBe(1);
        expect(new Set(counts).size).toBe(1);
        expect(rt.tracker.liveBytes('cpu', 'activations')).toBe(0);
        expect(rt.tracker.liveBytes('cpu', 'gradients')).toBe(0);
        expect(rt.tracker.peakBytes('cpu', 'activations')).toBeGreaterThan(0);
        expect(losses[49]!).toBeLessThan(losses[0]!);
      });
    });
  }
});
