// One rank of the tensor-parallel layer check: each layer against the single-rank layer it was cut
// from (every rank builds that one too, from the same seed), forward output and gradients:
//   ColumnParallelLinear (gatherOutput) -> GELU -> RowParallelLinear (whole input, scattered inside),
//   ColumnParallelLinear -> RowParallelLinear (inputIsParallel),
//   VocabParallelEmbedding -> LM head -> vocabParallelCrossEntropy with an ignored target (-1).
// Prints the largest absolute differences as JSON.
import { buildParallelGroups, initDistributed } from '@ds/core';
import { backward, crossEntropy, Embedding, fromArray, gelu, Generator, Linear, linear, narrow, randn, sum, type Tensor } from '@ds/tensor';

import { ColumnParallelLinear, parallelLmHead, RowParallelLinear, TensorParallel, VocabParallelEmbedding, vocabParallelCrossEntropy } from '../../src/index.js';

const dist = await initDistributed({ env: process.env });
const groups = await buildParallelGroups(dist, { model: dist.size });
const tp = new TensorParallel({ degree: dist.size, globalRank: dist.rank });
tp.bind(groups);

const maxDiff = (a: Tensor, b: Tensor): number => {
  const x = a.toArray();
  const y = b.toArray();
  if (x.length !== y.length) return Infinity;
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
};
/** Rows [start, start + size) of dim `dim` of t. */
const part = (t: Tensor, dim: number, start: number, size: number) => narrow(t, dim, start, size);
const out: Record<string, number> = {};

// MLP: Column(gather) -> GELU -> Row(whole input), against Linear -> GELU -> Linear.
{
  const [C, H] = [8, 12];
  const fc = new Linear(C, H, { generator: new Generator(11) });
  const proj = new Linear(H, C, { generator: new Generator(12) });
  const pfc = new ColumnParallelLinear(C, H, tp, { from: fc, gatherOutput: true });
  const pproj = new RowParallelLinear(H, C, tp, { from: proj });
  const x = randn([3, C], { generator: new Generator(13) });
  x.requiresGrad = true;
  const xp = randn([3, C], { generator: new Generator(13) });
  xp.requiresGrad = true;
  const y = proj.call(gelu(fc.call(x)));
  const yp = pproj.call(gelu(pfc.call(xp)));
  out.mlp_forward = maxDiff(y, yp);
  backward(sum(y));
  backward(sum(yp));
  out.mlp_input_grad = maxDiff(x.grad!, xp.grad!);
  const [hs, hn] = tp.range(H, 'hidden features'); // the column layer's output block = the row layer's input block
  out.column_weight_grad = maxDiff(part(fc.weight.grad!, 0, hs, hn), pfc.weight.grad!);
  out.column_bias_grad = maxDiff(part(fc.bias!.grad!, 0, hs, hn), pfc.bias!.grad!);
  out.row_weight_grad = maxDiff(part(proj.weight.grad!, 1, hs, hn), pproj.weight.grad!);
  out.row_bias_grad = maxDiff(proj.bias!.grad!, pproj.bias!.grad!);
}

// Column -> Row with inputIsParallel (no gather between them).
{
  const [C, H] = [6, 8];
  const fc = new Linear(C, H, { generator: new Generator(21) });
  const proj = new Linear(H, C, { generator: new Generator(22) });
  const pfc = new ColumnParallelLinear(C, H, tp, { from: fc });
  const pproj = new RowParallelLinear(H, C, tp, { from: proj, inputIsParallel: true });
  const x = randn([2, 3, C], { generator: new Generator(23) });
  x.requiresGrad = true;
  const xp = randn([2, 3, C], { generator: new Generator(23) });
  xp.requiresGrad = true;
  const y = proj.call(fc.call(x));
  const yp = pproj.call(pfc.call(xp));
  out.parallel_input_forward = maxDiff(y, yp);
  backward(sum(y));
  backward(sum(yp));
  out.parallel_input_grad = maxDiff(x.grad!, xp.grad!);
}

// Vocab-parallel embedding, tied LM head and cross-entropy (one target ignored), against the dense ones.
{
  const [V, C] = [10, 4];
  const emb = new Embedding(V, C, { generator: new Generator(31) });
  const pemb = new VocabParallelEmbedding(V, C, tp, { from: emb });
  const ids = fromArray([0, 9, 4, 5, 7, 2], [2, 3], { dtype: 'i32' });
  const targets = fromArray([3, -1, 9, 0, 5, 6], [2, 3], { dtype: 'i32' });
  const h = emb.call(ids);
  const hp = pemb.call(ids);
  out.embedding_forward = maxDiff(h, hp);
  const loss = crossEntropy(linear(h, emb.weight), targets);
  const lossP = vocabParallelCrossEntropy(parallelLmHead(hp, pemb), targets, tp, pemb.vocabStart);
  out.cross_entropy_forward = Math.abs(loss.item() - lossP.item());
  backward(loss);
  backward(lossP);
  out.embedding_weight_grad = maxDiff(part(emb.weight.grad!, 0, pemb.vocabStart, pemb.vocabPerRank), pemb.weight.grad!);
  out.loss = lossP.item();
}

console.log(JSON.stringify(out));
await dist.destroy();
