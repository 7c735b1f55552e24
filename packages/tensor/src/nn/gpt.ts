// GPT-2: learned positions, pre-LN blocks, tied input/output embedding, GPT-2 init (normal 0.02,
// residual projections scaled by 1/sqrt(2 * nLayer)) from a seeded generator. Parameter names
// follow nanoGPT (transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...), so PyTorch
// state dicts load by name.

import { arange, randn, zeros } from '../create.js';
import { DSShapeError } from '../errors.js';
import { add } from '../ops/elementwise.js';
import { crossEntropy } from '../ops/cross-entropy.js';
import { linear } from '../ops/matmul.js';
import { Generator } from '../random.js';
import { fmtShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { CausalSelfAttention, type AttentionKernel } from './attention.js';
import { checkpoint } from './checkpoint.js';
import { Dropout, Embedding, GELU, LayerNorm, Linear } from './layers.js';
import { Module, ModuleList } from './module.js';
import type { Parameter } from './parameter.js';

export interface GPTConfig {
  vocabSize: number;
  /** Maximum sequence length (rows of the position table). */
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  dropout?: number;
  bias?: boolean;
  /** Seed of the init and dropout generator. */
  seed?: number;
  attentionKernel?: AttentionKernel;
  /** Recompute each block's activations in backward instead of keeping them. */
  checkpointActivations?: boolean;
}

export class MLP extends Module<[Tensor], Tensor> {
  readonly c_fc: Linear;
  readonly gelu: GELU;
  readonly c_proj: Linear;
  readonly dropout: Dropout;
  constructor(nEmbd: number, opts: { generator: Generator; bias?: boolean; dropout?: number }) {
    super();
    this.c_fc = this.registerModule('c_fc', new Linear(nEmbd, 4 * nEmbd, opts));
    this.gelu = this.registerModule('gelu', new GELU());
    this.c_proj = this.registerModule('c_proj', new Linear(4 * nEmbd, nEmbd, opts));
    this.dropout = this.registerModule('dropout', new Dropout(opts.dropout ?? 0, { generator: opts.generator }));
  }
  forward(x: Tensor): Tensor {
    return this.dropout.call(this.c_proj.call(this.gelu.call(this.c_fc.call(x))));
  }
}

/** Pre-LN transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)). */
export class Block extends Module<[Tensor], Tensor> {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  readonly mlp: MLP;
  constructor(cfg: GPTConfig, generator: Generator) {
    super();
    const common = { generator, bias: cfg.bias, dropout: cfg.dropout };
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(cfg.nEmbd));
    this.attn = this.registerModule('attn', new CausalSelfAttention({ ...common, nEmbd: cfg.nEmbd, nHead: cfg.nHead, kernel: cfg.attentionKernel }));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(cfg.nEmbd));
    this.mlp = this.registerModule('mlp', new MLP(cfg.nEmbd, common));
  }
  forward(x: Tensor): Tensor {
    const h = add(x, this.attn.call(this.ln_1.call(x)));
    return add(h, this.mlp.call(this.ln_2.call(h)));
  }
}

/** The `transformer` container of nanoGPT: wte, wpe, drop, h, ln_f. */
class Transformer extends Module<[], never> {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<Block>;
  readonly ln_f: LayerNorm;
  constructor(cfg: GPTConfig, g: Generator) {
    super();
    this.wte = this.registerModule('wte', new Embedding(cfg.vocabSize, cfg.nEmbd, { generator: g }));
    this.wpe = this.registerModule('wpe', new Embedding(cfg.blockSize, cfg.nEmbd, { generator: g }));
    this.drop = this.registerModule('drop', new Dropout(cfg.dropout ?? 0, { generator: g }));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: cfg.nLayer }, () => new Block(cfg, g))));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(cfg.nEmbd));
  }
  forward(): never {
    throw new Error('Transformer is a container; GPT.forward drives it');
  }
}

export interface GPTOutput {
  /** [B, T, vocab] */
  logits: Tensor;
  /** Mean cross-entropy over the targets that are not -1; absent without targets. */
  loss?: Tensor;
}

export class GPT extends Module<[Tensor, Tensor?], GPTOutput> {
  readonly config: GPTConfig;
  readonly transformer: Transformer;

  constructor(config: GPTConfig) {
    super();
    this.config = config;
    const g = new Generator(config.seed ?? 0);
    this.transformer = this.registerModule('transformer', new Transformer(config, g));
    // Tied output embedding: lm_head.weight is the token table itself.
    const head = new TiedHead();
    head.registerParameter('weight', this.transformer.wte.weight);
    this.registerModule('lm_head', head);
    this.initWeights(g);
    this.labelParameters();
  }

  private initWeights(g: Generator): void {
    const residStd = 0.02 / Math.sqrt(2 * this.config.nLayer);
    for (const [name, p] of this.namedParameters()) {
      let fresh: Tensor;
      if (name.endsWith('.bias')) fresh = zeros(p.shape, { dtype: p.dtype });
      else if (name.includes('ln_')) continue;
      else fresh = randn(p.shape, { generator: g, std: name.endsWith('c_proj.weight') ? residStd : 0.02, dtype: p.dtype });
      p.runtime.kernels(p.device).copy(fresh.data(), p.data(), p.numel);
      fresh.dispose();
    }
  }

  /** ids, targets: [B, T] i32 with T <= blockSize. */
  forward(ids: Tensor, targets?: Tensor): GPTOutput {
    if (ids.rank !== 2 || ids.shape[1]! > this.config.blockSize) {
      throw new DSShapeError(`GPT.forward: ids must be [B, T] with T <= ${this.config.blockSize}, got ${fmtShape(ids.shape)}`);
    }
    const tr = this.transformer;
    const pos = arange(ids.shape[1]!, { dtype: 'i32', device: ids.device });
    let x = tr.drop.call(add(tr.wte.call(ids), tr.wpe.call(pos))); // [B, T, C]
    pos.dispose();
    for (const block of tr.h.items) {
      x = this.config.checkpointActivations
        ? checkpoint((xi) => block.call(xi), [x], { generators: block.generators(), params: block.parameters() })
        : block.call(x);
    }
    x = tr.ln_f.call(x);
    const logits = linear(x, tr.wte.weight); // [B, T, vocab]
    return targets ? { logits, loss: crossEntropy(logits, targets) } : { logits };
  }

  /** Number of parameters (the tied embedding counted once). */
  numParameters(): number {
    return this.parameters().reduce((n: number, p: Parameter) => n + p.numel, 0);
  }
}

/** A parameter holder without forward (lm_head, whose weight is tied to wte). */
class TiedHead extends Module<[], never> {
  forward(): never {
    throw new Error('lm_head is applied by GPT.forward');
  }
}
