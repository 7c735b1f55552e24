// Megatron's tensor-parallel layers (megatron/core/tensor_parallel/layers.py) over the topology's
// model-parallel group:
//
//   ColumnParallelLinear  Y = X A^T + b with A [out, in] split by output features (rows): rank r
//                         holds A_r [out/P, in] and b_r, computes Y_r = X A_r^T + b_r, the r-th
//                         block of Y's last dim; `gatherOutput` joins the blocks on every rank.
//   RowParallelLinear     A split by input features (columns): rank r holds A_r [out, in/P] and
//                         computes X_r A_r^T from its block X_r of the input (`inputIsParallel`: the
//                         input already is that block, as after a ColumnParallelLinear); the partial
//                         products are summed over the group, then the (replicated) bias is added.
//   VocabParallelEmbedding  the table split by rows (vocabulary): ids outside this rank's range
//                         look up nothing (their rows are zeroed) and the sum over the group gives
//                         every id its row.
//
// Each shard is cut from the full weight the single-rank layer would have (built from the same
// seeded init, then sliced), so a tensor-parallel model starts equal to the single-rank one.
//
// Each layer tells core which of its parameters are split and how (modelParallelSplits, core's
// duck-typed ParallelParameterInfo, Megatron's partition_dim / partition_stride): core's gradient
// norm counts split parameters on every model rank and replicated ones once, and checkpoints record
// the splits so that a consolidation tool can join the shards.
//
// Gradients: a shard's parameters are distinct per model rank, so the only reduction they need is
// core's data-parallel one (over the data group, the ranks holding the same shard); nothing is
// reduced over the model group. The replicated parameters (a row-parallel bias, layer norms,
// position embeddings) get equal gradients on every model rank by construction: every path from the
// loss into the replicated region passes through reduceFromParallel (whose forward makes the
// activations equal) or copyToParallel (whose backward sums the partial gradients), so the
// gradients reaching them are the same sums on every rank.
import { DSConfigError } from '@ds/core';
import { affine, cast, embedding, Embedding, full, Linear, linear, maximum, minimum, Module, mul, noGrad, Parameter, unsqueeze, add, type InitOptions, type Tensor } from '@ds/tensor';

import { copyToParallel, gatherFromParallel, reduceFromParallel, scatterToParallel, shardOf, stridedRowShard } from './comm-ops.js';
import type { ModelParallelSplit, TensorParallel, TensorParallelLayer } from './context.js';

export interface ColumnParallelOptions extends InitOptions {
  bias?: boolean;
  /** All-gather the output blocks so every rank gets the whole [..., out] (default false: keep [..., out / P]). */
  gatherOutput?: boolean;
  /**
   * The output features are `stride` equal blocks each split across ranks (a fused QKV projection:
   * rank r holds its heads' rows of q, of k and of v). Default 1.
   */
  stride?: number;
  /** Shard this single-rank layer instead of building one from `InitOptions`. */
  from?: Linear;
}

export class ColumnParallelLinear extends Module<[Tensor], Tensor> implements TensorParallelLayer {
  /** [outFeatures / P, inFeatures] */
  readonly weight: Parameter;
  /** [outFeatures / P] */
  readonly bias: Parameter | null;
  readonly gatherOutput: boolean;
  readonly stride: number;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly tp: TensorParallel,
    opts: ColumnParallelOptions = {},
  ) {
    super();
    const stride = opts.stride ?? 1;
    tp.range(outFeatures / stride, stride > 1 ? `ColumnParallelLinear: output features ${outFeatures} / stride ${stride} =` : 'ColumnParallelLinear: output features');
    const whole = opts.from ?? new Linear(inFeatures, outFeatures, opts);
    checkShape('ColumnParallelLinear', whole.weight, [outFeatures, inFeatures]);
    this.gatherOutput = opts.gatherOutput ?? false;
    this.stride = stride;
    this.weight = this.registerParameter('weight', Parameter.from(stridedRowShard(whole.weight, tp, stride, 'ColumnParallelLinear weight')))!;
    this.bias = whole.bias ? this.registerParameter('bias', Parameter.from(stridedRowShard(whole.bias, tp, stride, 'ColumnParallelLinear bias'))) : null;
    if (!opts.from) for (const p of whole.parameters()) p.dispose();
  }

  /** Weight and bias are split by output features (in `stride` blocks), for core's gradient norm and checkpoints. */
  modelParallelSplits(): [Parameter, ModelParallelSplit][] {
    if (this.tp.degree === 1) return [];
    const split = { dim: 0, stride: this.stride };
    return this.bias ? [[this.weight, split], [this.bias, split]] : [[this.weight, split]];
  }

  forward(x: Tensor): Tensor {
    const y = linear(copyToParallel(x, this.tp), this.weight, this.bias); // [..., out / P]
    return this.gatherOutput ? gatherFromParallel(y, this.tp) : y;
  }
}

export interface RowParallelOptions extends InitOptions {
  bias?: boolean;
  /** The input is already this rank's block of the last dim (default false: the layer takes its block of a whole input). */
  inputIsParallel?: boolean;
  from?: Linear;
}

export class RowParallelLinear extends Module<[Tensor], Tensor> implements TensorParallelLayer {
  /** [outFeatures, inFeatures / P] */
  readonly weight: Parameter;
  /** [outFeatures], replicated: added once after the sum over the group. */
  readonly bias: Parameter | null;
  readonly inputIsParallel: boolean;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly tp: TensorParallel,
    opts: RowParallelOptions = {},
  ) {
    super();
    const [start, size] = tp.range(inFeatures, 'RowParallelLinear: input features');
    const whole = opts.from ?? new Linear(inFeatures, outFeatures, opts);
    checkShape('RowParallelLinear', whole.weight, [outFeatures, inFeatures]);
    this.inputIsParallel = opts.inputIsParallel ?? false;
    this.weight = this.registerParameter('weight', Parameter.from(shardOf(whole.weight, 1, start, size, 'RowParallelLinear weight')))!;
    this.bias = whole.bias ? this.registerParameter('bias', Parameter.from(shardOf(whole.bias, 0, 0, outFeatures, 'RowParallelLinear bias'))) : null;
    if (!opts.from) for (const p of whole.parameters()) p.dispose();
  }

  /** The weight is split by input features; the bias is replicated (every model rank holds it whole). */
  modelParallelSplits(): [Parameter, ModelParallelSplit][] {
    return this.tp.degree === 1 ? [] : [[this.weight, { dim: 1, stride: 1 }]];
  }

  forward(x: Tensor): Tensor {
    const own = this.inputIsParallel ? x : scatterToParallel(x, this.tp); // [..., in / P]
    const y = reduceFromParallel(linear(own, this.weight), this.tp); // [..., out]
    return this.bias ? add(y, this.bias) : y;
  }
}

export interface VocabParallelOptions extends InitOptions {
  from?: Embedding;
}

export class VocabParallelEmbedding extends Module<[Tensor], Tensor> implements TensorParallelLayer {
  /** [numEmbeddings / P, dim]: rows [vocabStart, vocabStart + numEmbeddings / P) of the table. */
  readonly weight: Parameter;
  readonly vocabStart: number;
  readonly vocabPerRank: number;

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
    readonly tp: TensorParallel,
    opts: VocabParallelOptions = {},
  ) {
    super();
    [this.vocabStart, this.vocabPerRank] = tp.range(numEmbeddings, 'VocabParallelEmbedding: vocabulary size');
    const whole = opts.from ?? new Embedding(numEmbeddings, dim, opts);
    checkShape('VocabParallelEmbedding', whole.weight, [numEmbeddings, dim]);
    this.weight = this.registerParameter('weight', Parameter.from(shardOf(whole.weight, 0, this.vocabStart, this.vocabPerRank, 'VocabParallelEmbedding weight')))!;
    if (!opts.from) whole.weight.dispose();
  }

  /** The table is split by rows (vocabulary). */
  modelParallelSplits(): [Parameter, ModelParallelSplit][] {
    return this.tp.degree === 1 ? [] : [[this.weight, { dim: 0, stride: 1 }]];
  }

  /** ids [...] i32 over the whole vocabulary -> [..., dim]. */
  forward(ids: Tensor): Tensor {
    if (this.tp.degree === 1) return embedding(ids, this.weight);
    const { local, inRange } = localIndex(ids, this.vocabStart, this.vocabPerRank);
    const rows = embedding(local, this.weight); // [..., dim]; ids of other ranks read row 0 ...
    const mask = noGrad(() => unsqueeze(cast(inRange, rows.dtype), -1));
    const own = mul(rows, mask); // ... and are zeroed here, so their gradient is zero too
    for (const t of [local, inRange, mask]) t.dispose();
    return reduceFromParallel(own, this.tp);
  }
}

/** The LM head tied to a vocab-parallel embedding: x [..., C] -> this rank's logits [..., V / P]. */
export function parallelLmHead(x: Tensor, wte: VocabParallelEmbedding): Tensor {
  return linear(copyToParallel(x, wte.tp), wte.weight);
}

function checkShape(who: string, w: Tensor, want: number[]): void {
  if (w.shape.join(',') !== want.join(',')) throw new DSConfigError(`${who}: the layer given in 'from' has weight [${w.shape.join(', ')}], expected [${want.join(', ')}]`);
}

/**
 * Ids relative to a vocabulary range [start, start + size): `local` (i32, 0 outside the range) and
 * `inRange` (f32, 1 inside, 0 outside or for the ignore index -1), computed with the device's
 * elementwise kernels (ids are whole numbers, exact in f32 below 2^24).
 */
export function localIndex(ids: Tensor, start: number, size: number): { local: Tensor; inRange: Tensor } {
  return noGrad(() => {
    const f = cast(ids, 'f32');
    const x = affine(f, 1, -start); // id - start
    const zero = full([1], 0, { device: ids.device });
    const one = full([1], 1, { device: ids.device });
    const clamp01 = (y: Tensor) => {
      const lo = maximum(y, zero);
      const out = minimum(lo, one);
      (lo.dispose(), y.dispose());
      return out;
    };
    const atLeastStart = clamp01(affine(x, 1, 1)); // 1 where id - start >= 0
    const belowEnd = clamp01(affine(x, -1, size)); // 1 where id - start <= size - 1
    const inRange = mul(atLeastStart, belowEnd);
    const kept = mul(x, inRange);
    const local = cast(kept, 'i32');
    for (const t of [f, x, zero, one, atLeastStart, belowEnd, kept]) if (t !== ids) t.dispose();
    return { local, inRange };
  });
}
