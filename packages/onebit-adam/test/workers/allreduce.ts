// One rank of the compressed all-reduce test: for each size in DS_TEST_SIZES, DS_TEST_ITERS calls
// on this rank's deterministic input (inputFor), printing everything the reference checks.
import { f32ToBf16, bf16ToF32, f32ToF16, f16ToF32 } from '@ds/tensor';
import { initDistributed } from '@ds/core';

import { CompressedAllReduce, createErrors, nativeOnebitKernels, type CompressibleDtype } from '../../src/index.js';
import { inputFor } from './inputs.js';

const sizes = JSON.parse(process.env.DS_TEST_SIZES!) as number[];
const iters = Number(process.env.DS_TEST_ITERS ?? 3);
const dtype = (process.env.DS_TEST_DTYPE ?? 'f32') as CompressibleDtype;
const dist = await initDistributed();
const group = dist.world;
const car = new CompressedAllReduce(group, nativeOnebitKernels());
const out = [];
for (const n of sizes) {
  const errors = createErrors(n, group.size);
  const steps = [];
  for (let t = 0; t < iters; t++) {
    const values = inputFor(group.rank, t, n);
    const array = dtype === 'f32' ? Float32Array.from(values) : Uint16Array.from(values, dtype === 'bf16' ? f32ToBf16 : f32ToF16);
    const stats = car.run({ dtype, array }, errors, true);
    const widen = dtype === 'bf16' ? bf16ToF32 : f16ToF32;
    steps.push({
      output: dtype === 'f32' ? [...array] : [...array].map(widen),
      workerScales: [...stats.workerScales],
      serverScales: [...stats.serverScales],
      workerBits: [...stats.workerBits!],
      serverBits: [...stats.serverBits!],
      worker: [...errors.worker],
      server: [...errors.server],
    });
  }
  out.push({ n, steps });
}
console.log(JSON.stringify({ rank: group.rank, out }));
await dist.destroy();
