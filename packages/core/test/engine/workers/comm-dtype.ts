// One rank: one backward of the tiny GPT (fp32) at stage 0 with communication_data_type unset and
// 'bf16'; reports whether the reduced gradients are all bf16 values and whether the two agree to bf16 precision.
import { batch, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { GPT, tidy, type Tensor } from '@ds/tensor';

import type { Distributed } from '../../../src/comm/init.js';
import { initialize } from '../../../src/engine/initialize.js';

const base = { train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 1, optimizer: { type: 'AdamW', params: { lr: 1e-2 } } };
let dist: Distributed | null | undefined;
const grads: Float32Array[] = [];
const report: Record<string, { bf16Exact: boolean }> = {};
for (const [name, extra] of [['fp32', {}], ['bf16', { communication_data_type: 'bf16' }]] as const) {
  const model = new GPT(TINY_GPT);
  const { engine } = await initialize({ model, config: { ...base, ...extra }, log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const { ids, targets } = batch(0, 0, engine.rank, 1);
  const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
  await engine.backward(loss);
  const all = model.parameters().flatMap((p) => [...(p.grad!.data() as Float32Array)]);
  grads.push(Float32Array.from(all));
  const bits = new Uint32Array(Float32Array.from(all).buffer);
  report[name] = { bf16Exact: bits.every((b) => (b & 0xffff) === 0) };
  loss.dispose();
  engine.destroy();
}
const [a, b] = grads as [Float32Array, Float32Array];
// Each rank's input is rounded to bf16 before the sum, so the error scales with the inputs, not the
// (possibly cancelling) average: compare against the largest gradient.
const scale = a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const close = a.every((x, i) => Math.abs(x - b[i]!) <= 2 ** -7 * scale);
console.log(JSON.stringify({ ...report, close }));
await dist?.destroy();
