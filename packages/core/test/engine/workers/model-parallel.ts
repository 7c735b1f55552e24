// One rank of a 2-rank job on the model axis (DS_TEST_AXIS=model) or the pipe axis (pipe): a module
// of two weights whose loss is sum(a * ca) + sum(b * cb), so the gradients are the constants. `a`
// differs per rank and, on the model axis, is declared split across the model group; `b` is the
// same on both ranks: replicated over the model group, or declared a pipe-replicated copy on rank 1.
// Step 1: plain; step 2: rank 1's `a` gradient is Infinity. Then a checkpoint round trip in DS_TEST_DIR.
// Prints the norms, whether each step was applied, and the checkpoint's file names.
import { readdirSync } from 'node:fs';

import { add, full, Module, mul, Parameter, sum, type Tensor } from '@ds/tensor';

import { initialize } from '../../../src/engine/initialize.js';

const axis = process.env.DS_TEST_AXIS as 'model' | 'pipe';
const dir = process.env.DS_TEST_DIR!;
const rank = Number(process.env.RANK);

class Declared extends Module<[Tensor], Tensor> {
  readonly a: Parameter;
  readonly b: Parameter;
  constructor() {
    super();
    this.a = this.registerParameter('a', Parameter.from(full([4, 3], rank + 1)))!;
    this.b = this.registerParameter('b', Parameter.from(full([5], 2)))!;
  }
  modelParallelSplits(): [Tensor, { dim: number; stride: number }][] {
    return axis === 'model' ? [[this.a, { dim: 0, stride: 1 }]] : [];
  }
  pipeReplicatedParameters(): Tensor[] {
    return axis === 'pipe' && rank === 1 ? [this.b] : [];
  }
  forward(ca: Tensor): Tensor {
    const cb = full([5], 3);
    return add(sum(mul(this.a, ca)), sum(mul(this.b, cb)));
  }
}

const model = new Declared();
const config = { train_batch_size: 1, train_micro_batch_size_per_gpu: 1, optimizer: { type: 'SGD', params: { lr: 0.1 } } };
const { engine } = await initialize({ model, config, topology: { [axis]: 2 }, log: () => {} });
const norms: number[] = [];
const applied: boolean[] = [];
for (const ca of [rank + 1, rank === 1 ? Infinity : 1]) {
  const loss = engine.forward<Tensor>(full([4, 3], ca));
  await engine.backward(loss);
  loss.dispose();
  await engine.step();
  norms.push(engine.getGlobalGradNorm());
  applied.push(engine.wasStepApplied());
}
const before = [...(model.a.data() as Float32Array)];
await engine.saveCheckpoint(dir, { tag: 't' });
const loss = engine.forward<Tensor>(full([4, 3], 1)); // one more step moves the weights ...
await engine.backward(loss);
loss.dispose();
await engine.step();
const moved = (model.a.data() as Float32Array).some((v, i) => v !== before[i]);
await engine.loadCheckpoint(dir, { tag: 't' }); // ... and loading puts them back
const after = [...(model.a.data() as Float32Array)];
console.log(JSON.stringify({ rank, norms: norms.map((n) => (Number.isNaN(n) ? 'NaN' : n)), applied, files: readdirSync(`${dir}/t`).sort(), moved, restored: before.every((v, i) => v === after[i]), steps: engine.globalSteps }));
engine.destroy();
await engine.dist?.destroy();
