// GPT-2 with Megatron's tensor parallelism (Megatron-LM's ParallelTransformerLayer / GPTModel): each
// block's attention splits its heads across the model-parallel ranks (the fused QKV projection is a
// ColumnParallelLinear whose q, k and v blocks are each split by heads; the output projection a
// RowParallelLinear), the MLP's c_fc is column-parallel and its c_proj row-parallel, and the token
// embedding is vocab-parallel and tied to the LM head, whose logits stay split by vocabulary into
// the vocab-parallel cross-entropy. Layer norms, position embeddings and row-parallel biases are
// replicated.
//
// Every layer first builds the single-rank layer of ../gpt.ts from the same seed and cuts its shard
// out of it, and keeps the single-rank layer's layer norms and dropouts (with their generator): the
// tensor-parallel GPT starts with exactly the single-rank GPT's weights, draws the same dropout
// masks (dropout only runs in the replicated part, after a reduction, where every rank has the
// whole activation), and matches it up to the order of the sums.
//
// Two forms: `GPTTensorParallel`, a plain Module (ids, targets) -> loss for core's engine, and
// `gptPipeParallel`, the same layers as a PipelineModule (pipe x model).
import { DSConfigError, DSUnsupportedError } from '@ds/core';
import { add, arange, chunk, contiguous, Module, ModuleList, permute, reshape, type AttentionKernel, type CausalSelfAttention, type Dropout, type Embedding, type GELU, type GPTConfig, type LayerNorm, type MLP, type Tensor } from '@ds/tensor';

import { BlockPipe, EmbeddingPipe, FinalNormPipe } from '../gpt.js';
import { LayerSpec, PipelineModule, TiedLayerSpec, type PipelineModuleOptions } from '../module.js';
import type { TensorParallel } from './context.js';
import { vocabParallelCrossEntropy } from './cross-entropy.js';
import { ColumnParallelLinear, parallelLmHead, RowParallelLinear, VocabParallelEmbedding } from './layers.js';

/** The degree checks of a GPT config, each naming the numbers. */
export function checkParallelGpt(cfg: GPTConfig, tp: TensorParallel): void {
  const p = tp.degree;
  if (cfg.nHead % p !== 0) throw new DSConfigError(`tensor-parallel GPT: nHead ${cfg.nHead} is not divisible by the tensor-parallel degree ${p}; use a degree that divides the number of heads`);
  if (cfg.vocabSize % p !== 0) throw new DSConfigError(`tensor-parallel GPT: vocabSize ${cfg.vocabSize} is not divisible by the tensor-parallel degree ${p}; pad the vocabulary to a multiple of ${p} (Megatron pads it too)`);
  if (typeof cfg.attentionKernel === 'string' && cfg.attentionKernel !== 'dense') {
    throw new DSUnsupportedError(`tensor-parallel GPT: attention kernel '${cfg.attentionKernel}' is resolved by name for @ds/tensor's attention modules only; pass an AttentionKernel object (it sees this rank's heads) or leave the default dense kernel`);
  }
}

/** Token (vocab-parallel) and position (replicated) embeddings with dropout: ids [B, T] -> [B, T, C]. */
export class ParallelEmbeddingPipe extends Module<[Tensor], Tensor> {
  readonly wte: VocabParallelEmbedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  constructor(cfg: GPTConfig, seed: number, tp: TensorParallel) {
    super();
    checkParallelGpt(cfg, tp);
    const whole = new EmbeddingPipe(cfg, seed);
    this.wte = this.registerModule('wte', new VocabParallelEmbedding(cfg.vocabSize, cfg.nEmbd, tp, { from: whole.wte }));
    whole.wte.weight.dispose();
    this.wpe = this.registerModule('wpe', whole.wpe);
    this.drop = this.registerModule('drop', whole.drop);
  }
  forward(ids: Tensor): Tensor {
    const pos = arange(ids.shape[1]!, { dtype: 'i32', device: ids.device });
    const x = this.drop.call(add(this.wte.call(ids), this.wpe.call(pos))); // [B, T, C]
    pos.dispose();
    return x;
  }
}

/** Self-attention over this rank's heads: QKV column-parallel (by heads), output projection row-parallel. */
export class ParallelSelfAttention extends Module<[Tensor], Tensor> {
  readonly c_attn: ColumnParallelLinear;
  readonly c_proj: RowParallelLinear;
  readonly resid_dropout: Dropout;
  /** Heads on this rank. */
  readonly nHead: number;
  readonly kernel: AttentionKernel;
  constructor(whole: CausalSelfAttention, nEmbd: number, tp: TensorParallel) {
    super();
    this.nHead = whole.nHead / tp.degree;
    this.kernel = whole.kernel;
    this.c_attn = this.registerModule('c_attn', new ColumnParallelLinear(nEmbd, 3 * nEmbd, tp, { from: whole.c_attn, stride: 3 }));
    this.c_proj = this.registerModule('c_proj', new RowParallelLinear(nEmbd, nEmbd, tp, { from: whole.c_proj, inputIsParallel: true }));
    this.resid_dropout = this.registerModule('resid_dropout', whole.resid_dropout);
  }
  forward(x: Tensor): Tensor {
    const [b, t] = x.shape as [number, number, number];
    const h = this.nHead;
    const qkv = this.c_attn.call(x); // [B, T, 3 C / P]: q, k, v of this rank's heads
    const d = qkv.shape[2]! / (3 * h);
    const heads = contiguous(permute(reshape(qkv, [b, t, 3, h, d]), [2, 0, 3, 1, 4])); // [3, B, H / P, T, D]
    const [q, k, v] = chunk(heads, 3, 0).map((piece) => reshape(piece, [b, h, t, d])) as [Tensor, Tensor, Tensor];
    const y = this.kernel.attend(q, k, v, { scale: 1 / Math.sqrt(d), causal: true }); // [B, H / P, T, D]
    const merged = reshape(contiguous(permute(y, [0, 2, 1, 3])), [b, t, h * d]); // [B, T, C / P]
    return this.resid_dropout.call(this.c_proj.call(merged)); // [B, T, C], summed over the ranks
  }
}

/** The MLP: c_fc column-parallel, GELU on this rank's block, c_proj row-parallel. */
export class ParallelMLP extends Module<[Tensor], Tensor> {
  readonly c_fc: ColumnParallelLinear;
  readonly gelu: GELU;
  readonly c_proj: RowParallelLinear;
  readonly dropout: Dropout;
  constructor(whole: MLP, nEmbd: number, tp: TensorParallel) {
    super();
    this.c_fc = this.registerModule('c_fc', new ColumnParallelLinear(nEmbd, 4 * nEmbd, tp, { from: whole.c_fc }));
    this.gelu = this.registerModule('gelu', whole.gelu);
    this.c_proj = this.registerModule('c_proj', new RowParallelLinear(4 * nEmbd, nEmbd, tp, { from: whole.c_proj, inputIsParallel: true }));
    this.dropout = this.registerModule('dropout', whole.dropout);
  }
  forward(x: Tensor): Tensor {
    return this.dropout.call(this.c_proj.call(this.gelu.call(this.c_fc.call(x))));
  }
}

/** One pre-LN block with tensor-parallel attention and MLP, cut from BlockPipe(cfg, seed). */
export class ParallelBlockPipe extends Module<[Tensor], Tensor> {
  readonly ln_1: LayerNorm;
  readonly attn: ParallelSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: ParallelMLP;
  constructor(cfg: GPTConfig, seed: number, tp: TensorParallel) {
    super();
    checkParallelGpt(cfg, tp);
    const whole = new BlockPipe(cfg, seed).block;
    this.ln_1 = this.registerModule('ln_1', whole.ln_1);
    this.attn = this.registerModule('attn', new ParallelSelfAttention(whole.attn, cfg.nEmbd, tp));
    this.ln_2 = this.registerModule('ln_2', whole.ln_2);
    this.mlp = this.registerModule('mlp', new ParallelMLP(whole.mlp, cfg.nEmbd, tp));
    // The single-rank projections were only the source of the shards.
    for (const lin of [whole.attn.c_attn, whole.attn.c_proj, whole.mlp.c_fc, whole.mlp.c_proj]) for (const p of lin.parameters()) p.dispose();
  }
  forward(x: Tensor): Tensor {
    // Block's order: h = x + attn(ln_1(x)) with ln_2(h) fused, then h + mlp(ln_2(h)).
    const [h, n2] = this.ln_2.callResidual(x, this.attn.call(this.ln_1.call(x)));
    return add(h, this.mlp.call(n2));
  }
}

/** The tensor-parallel GPT as one Module: (ids [B, T], targets [B, T]) -> mean loss. */
export class GPTTensorParallel extends Module<[Tensor, Tensor], Tensor> {
  readonly embed: ParallelEmbeddingPipe;
  readonly h: ModuleList<ParallelBlockPipe>;
  readonly ln_f: FinalNormPipe;
  constructor(
    readonly config: GPTConfig,
    readonly tp: TensorParallel,
  ) {
    super();
    checkParallelGpt(config, tp);
    const seed = config.seed ?? 0;
    this.embed = this.registerModule('embed', new ParallelEmbeddingPipe(config, seed, tp));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: config.nLayer }, (_, i) => new ParallelBlockPipe(config, seed + 1 + i, tp))));
    this.ln_f = this.registerModule('ln_f', new FinalNormPipe(config));
    this.labelParameters();
  }
  forward(ids: Tensor, targets: Tensor): Tensor {
    let x = this.embed.call(ids); // [B, T, C]
    for (const block of this.h.items) x = block.call(x);
    const logits = parallelLmHead(this.ln_f.call(x), this.embed.wte); // [B, T, V / P]
    return vocabParallelCrossEntropy(logits, targets, this.tp, this.embed.wte.vocabStart);
  }
  /** The blocks: what ds_config's activation_checkpointing recomputes. */
  override checkpointableLayers(): Module[] {
    return this.h.items;
  }
}

/** The layer list of the tensor-parallel GPT (the same seeds as gptLayers, so the same weights). */
export function gptParallelLayers(cfg: GPTConfig, tp: TensorParallel, baseSeed = cfg.seed ?? 0): (LayerSpec | TiedLayerSpec)[] {
  checkParallelGpt(cfg, tp);
  const args = [cfg, baseSeed, tp] as [GPTConfig, number, TensorParallel];
  const embed = (opts = {}) => new TiedLayerSpec('embed', ParallelEmbeddingPipe, args, { tiedWeightAttr: ['wte.weight'], ...opts });
  return [
    embed(),
    ...Array.from({ length: cfg.nLayer }, (_, i) => new LayerSpec(ParallelBlockPipe, cfg, baseSeed + 1 + i, tp)),
    new LayerSpec(FinalNormPipe, cfg),
    embed({ forwardFn: (m: Module, x: Tensor) => parallelLmHead(x, (m as ParallelEmbeddingPipe).wte) }), // [B, T, V / P]
  ];
}

/**
 * The tensor-parallel GPT as a PipelineModule (pipe x model): `tp` says the model degree and this
 * rank's shard (new TensorParallel({ degree, globalRank: rank })); the loss is the vocab-parallel
 * cross-entropy of the last stage's logits.
 */
export function gptPipeParallel(cfg: GPTConfig, tp: TensorParallel, opts: Omit<PipelineModuleOptions, 'layers' | 'lossFn' | 'tensorParallel'>): PipelineModule {
  const vocabStart = tp.range(cfg.vocabSize, 'tensor-parallel GPT: vocabSize')[0];
  return new PipelineModule({
    ...opts,
    tensorParallel: tp,
    layers: gptParallelLayers(cfg, tp),
    lossFn: (logits, targets) => vocabParallelCrossEntropy(logits, targets, tp, vocabStart),
  });
}
