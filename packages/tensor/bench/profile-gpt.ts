// Where the GPT bench's step spends its time, kernel by kernel: `pnpm --filter @ds/tensor exec tsx
// bench/profile-gpt.ts [--shape 1|2] [--steps N]`. Runs the bench's model and step (bf16 autocast,
// f32 AdamW, 2 threads; shape 1 is gpt_train_tokens_per_s, shape 2 the d384_l6_s512 row), wraps every
// cpu kernel with a timer after one warm-up step, and prints each kernel's share of the step (GEMMs
// per dtype, layout and shape, with their GFLOP/s) and the measured f32 FMA / bf16 dot peaks. The
// kernels run synchronously, so a kernel's wall time is its own; the timer adds about a microsecond
// per call.
import { parseArgs } from 'node:util';

import type { CpuKernels } from '../src/backends/cpu.js';
import { randint } from '../src/create.js';
import { GPT } from '../src/nn/gpt.js';
import { gptTrainer } from '../src/nn/gpt-trainer.js';
import { getRuntime } from '../src/runtime.js';
import type { GemmArgs } from '../src/kernels/table.js';

const { values } = parseArgs({ options: { shape: { type: 'string', default: '1' }, steps: { type: 'string', default: '2' } } });
const SHAPES = {
  '1': { model: { vocabSize: 8192, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256 }, batch: 8, seq: 256 },
  '2': { model: { vocabSize: 8192, blockSize: 512, nLayer: 6, nHead: 6, nEmbd: 384 }, batch: 4, seq: 512 },
} as const;
const shape = SHAPES[values.shape as keyof typeof SHAPES];
if (!shape) throw new Error(`--shape must be 1 or 2, got ${values.shape}`);
const steps = Number(values.steps);

const kernels = getRuntime().kernels('cpu') as CpuKernels & Record<string, unknown>;
kernels.setNumThreads(2);
const time = new Map<string, { ms: number; calls: number; flops: number }>();
let timing = false;
const methods = new Set([...Object.keys(kernels), ...Object.getOwnPropertyNames(Object.getPrototypeOf(kernels))]);
for (const name of methods) {
  const f = kernels[name];
  if (typeof f !== 'function' || name === 'constructor') continue;
  kernels[name] = (...args: unknown[]) => {
    if (!timing) return (f as (...a: unknown[]) => unknown).apply(kernels, args);
    const t0 = performance.now();
    try {
      return (f as (...a: unknown[]) => unknown).apply(kernels, args);
    } finally {
      let key = name;
      let flops = 0;
      if (name === 'gemm' || name === 'gemmBias') {
        const g = args[0] as GemmArgs;
        key = `${name} ${g.dtype}->${g.outDtype} ${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'} ${g.batch > 1 ? `${g.batch} x ` : ''}${g.m}x${g.n}x${g.k}`;
        flops = 2 * g.batch * g.m * g.n * g.k;
      } else if (name === 'cast') {
        key = `cast ${args[0]}->${args[2]}`;
      }
      const e = time.get(key) ?? { ms: 0, calls: 0, flops: 0 };
      e.ms += performance.now() - t0;
      e.calls += 1;
      e.flops += flops;
      time.set(key, e);
    }
  };
}

const gpt = new GPT({ ...shape.model, seed: 0 });
const ids = randint([shape.batch, shape.seq], shape.model.vocabSize, { seed: 1 }).keep();
const targets = randint([shape.batch, shape.seq], shape.model.vocabSize, { seed: 2 }).keep();
const trainer = gptTrainer(gpt, ids, targets);
let total = 0;
for (let s = 0; s <= steps; s++) {
  timing = s > 0; // step 0 warms up
  const t0 = performance.now();
  trainer.step();
  if (timing) total += performance.now() - t0;
}
timing = false;
const inKernels = [...time.values()].reduce((a, e) => a + e.ms, 0);
const peak = kernels.probePeak(0.3);
console.log(`shape ${values.shape}: ${(total / steps).toFixed(0)} ms per step (${((shape.batch * shape.seq * steps) / (total / 1000)).toFixed(0)} tokens/s), ${((100 * inKernels) / total).toFixed(0)}% in kernels; peak per core: f32 FMA ${peak.f32FmaGflops.toFixed(0)} GFLOP/s, bf16 dot ${peak.bf16DotGflops.toFixed(0)} GFLOP/s`);
for (const [key, e] of [...time.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
  if (e.ms < 0.005 * total) continue;
  const rate = e.flops ? `  ${(e.flops / e.ms / 1e6).toFixed(0)} GFLOP/s` : '';
  console.log(`${(e.ms / steps).toFixed(1).padStart(8)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  x${e.calls / steps}  ${key}${rate}`);
}
