// GPT-2: learned positions, pre-LN blocks, tied input/output embedding, GPT-2 init (normal 0.02,
// residual projections scaled by 1/sqrt(2 * nLayer)) from a seeded generator, given to each
// parameter as it is created (so a parameter hook sees its final initial values). Parameter names
// follow nanoGPT (transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...), so PyTorch
// state dicts load by name.

import { arange, randn, zeros } from '../create.js';
import { DSShapeError, DSUnsupportedError } from '../errors.js';
import { add } from '../ops/elementwise.js';
import { crossEntropy } from '../ops/cross-entropy.js';
import { linear } from '../ops/matmul.js';
import { Generator } from '../random.js';
import { fmtShape } from '../shape-util.js';
import type { Tensor } from '../tensor.js';
import { CausalSelfAttention, type AttentionKernel } from './attention.js';
import { Dropout, Embedding, GELU, LayerNorm, Linear, type ParamInit } from './layers.js';
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
  /** An AttentionKernel, or the name of a plugin's kernel that initialize() resolves; default dense. */
  attentionKernel?: AttentionKernel | string;
  /** Recompute each block's activations in backward instead of keeping them. */
  checkpointActivations?: boolean;
  /** Device of the parameters (default cpu): 'sim', 'cuda'. The same seed gives the same weights on every device. */
  device?: string;
}

/**
 * Training FLOPs per token of a GPT (forward and backward): 6 N for the matrix products over N
 * parameters plus 12 L T C for attention's scores and weighted sum (the estimate of the PaLM paper's
 * appendix and nanoGPT's MFU). The benchmarks' MFU uses it.
 */
export function gptTrainFlopsPerToken(parameters: number, cfg: Pick<GPTConfig, 'nLayer' | 'nEmbd'>, seq: number): number {
  return 6 * parameters + 12 * cfg.nLayer * seq * cfg.nEmbd;
}

/** GPT-2's init: weights normal(0, 0.02), biases zero, residual projections (c_proj) normal(0, 0.02 / sqrt(2 nLayer)). */
export interface Gpt2Init {
  init: ParamInit;
  projInit: ParamInit;
}

function gpt2Init(g: Generator, nLayer: number, device?: string): Gpt2Init {
  const normal =
    (std: number): ParamInit =>
    (name, shape, dtype) =>
      name === 'bias' ? zeros(shape, { dtype, device }) : randn(shape, { generator: g, std, dtype, device });
  return { init: normal(0.02), projInit: normal(0.02 / Math.sqrt(2 * nLayer)) };
}

/**
 * How many 32-bit draws the layers' default init of this GPT makes (uniform: 2 per element,
 * normal: 4). GPT used to build its layers with that init and overwrite it with GPT-2's afterwards;
 * skipping these draws first keeps every seed's weights and dropout stream as they were.
 */
function defaultInitDraws(cfg: GPTConfig): number {
  const c = cfg.nEmbd;
  const bias = cfg.bias === false ? 0 : 1;
  const linear = (inF: number, outF: number) => 2 * (inF * outF + bias * outF);
  const embedding = (rows: number) => 4 * rows * c;
  return embedding(cfg.vocabSize) + embedding(cfg.blockSize) + cfg.nLayer * (linear(c, 3 * c) + linear(c, c) + linear(c, 4 * c) + linear(4 * c, c));
}

export class MLP extends Module<[Tensor], Tensor> {
  readonly c_fc: Linear;
  readonly gelu: GELU;
  readonly c_proj: Linear;
  readonly dropout: Dropout;
  /** `init` / `projInit` replace the default init of c_fc / c_proj. */
  constructor(nEmbd: number, opts: { generator: Generator; bias?: boolean; dropout?: number; init?: ParamInit; projInit?: ParamInit }) {
    super();
    this.c_fc = this.registerModule('c_fc', new Linear(nEmbd, 4 * nEmbd, opts));
    this.gelu = this.registerModule('gelu', new GELU());
    this.c_proj = this.registerModule('c_proj', new Linear(4 * nEmbd, nEmbd, { ...opts, init: opts.projInit ?? opts.init }));
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
  /** Without `init` the layers keep their default init (GPT passes GPT-2's). */
  constructor(cfg: GPTConfig, generator: Generator, init?: Gpt2Init) {
    super();
    const common = { generator, bias: cfg.bias, dropout: cfg.dropout, device: cfg.device, ...init };
    this.ln_1 = this.registerModule('ln_1', new LayerNorm(cfg.nEmbd, 1e-5, { device: cfg.device }));
    this.attn = this.registerModule('attn', new CausalSelfAttention({ ...common, nEmbd: cfg.nEmbd, nHead: cfg.nHead, kernel: cfg.attentionKernel }));
    this.ln_2 = this.registerModule('ln_2', new LayerNorm(cfg.nEmbd, 1e-5, { device: cfg.device }));
    this.mlp = this.registerModule('mlp', new MLP(cfg.nEmbd, common));
  }
  forward(x: Tensor): Tensor {
    // h = x + attn(ln_1(x)) and ln_2(h) in one fused pass (LayerNorm.callResidual).
    const [h, n2] = this.ln_2.callResidual(x, this.attn.call(this.ln_1.call(x)));
    return add(h, this.mlp.call(n2));
  }
}

/** The `transformer` container of nanoGPT: wte, wpe, drop, h, ln_f. */
class Transformer extends Module<[], never> {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<Block>;
  readonly ln_f: LayerNorm;
  constructor(cfg: GPTConfig, g: Generator, init: Gpt2Init) {
    super();
    this.wte = this.registerModule('wte', new Embedding(cfg.vocabSize, cfg.nEmbd, { generator: g, init: init.init }));
    this.wpe = this.registerModule('wpe', new Embedding(cfg.blockSize, cfg.nEmbd, { generator: g, init: init.init }));
    this.drop = this.registerModule('drop', new Dropout(cfg.dropout ?? 0, { generator: g }));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: cfg.nLayer }, () => new Block(cfg, g, init))));
    this.ln_f = this.registerModule('ln_f', new LayerNorm(cfg.nEmbd, 1e-5, { device: cfg.device }));
  }
  forward(): never {
    throw new DSUnsupportedError('GPT.transformer.forward: the transformer is a container of the GPT\'s layers; call the GPT itself (gpt.call(ids, targets))');
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
    for (let n = defaultInitDraws(config); n > 0; n--) g.nextU32();
    // Parameters are created (and initialised) in registration order, the order of the init draws.
    this.transformer = this.registerModule('transformer', new Transformer(config, g, gpt2Init(g, config.nLayer, config.device)));
    // Tied output embedding: lm_head.weight is the token table itself.
    const head = new TiedHead();
    head.registerParameter('weight', this.transformer.wte.weight);
    this.registerModule('lm_head', head);
    this.labelParameters();
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
    for (const block of tr.h.items) x = this.config.checkpointActivations ? block.callCheckpointed(x) : block.call(x);
    x = tr.ln_f.call(x);
    const logits = linear(x, tr.wte.weight); // [B, T, vocab]
    return targets ? { logits, loss: crossEntropy(logits, targets) } : { logits };
  }

  /** The transformer blocks: what ds_config's activation_checkpointing recomputes. */
  override checkpointableLayers(): Module[] {
    return this.transformer.h.items;
  }

  /** Number of parameters (the tied embedding counted once). */
  numParameters(): number {
    return this.parameters().reduce((n: number, p: Parameter) => n + p.numel, 0);
  }
}

/** A parameter holder without forward (lm_head, whose weight is tied to wte). */
class TiedHead extends Module<[], never> {
  forward(): never {
    throw new DSUnsupportedError('GPT.lm_head.forward: lm_head (tied to wte) is applied by GPT.forward; call the GPT itself (gpt.call(ids, targets))');
  }
}
