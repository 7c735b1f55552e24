// GPT-2 expressed as a PipelineModule (DeepSpeed's GPT2ModelPipe in Megatron-DeepSpeed): the
// embedding (token + position) as a TiedLayerSpec whose second occurrence, on the last stage, is the
// LM head x @ wte^T; the transformer blocks; the final LayerNorm; cross-entropy as the loss. Every
// layer takes its own seed (baseSeed + layer index), so a layer has the same initial weights on
// whichever stage builds it and both copies of the tied embedding start equal.
import { add, arange, Block, crossEntropy, Dropout, Embedding, Generator, LayerNorm, linear, Module, randn, zeros, type GPTConfig, type Gpt2Init, type ParamInit, type Tensor } from '@ds/tensor';

import { LayerSpec, PipelineModule, TiedLayerSpec, type PipelineModuleOptions } from './module.js';

function gpt2Init(seed: number, nLayer: number): Gpt2Init & { generator: Generator } {
  const generator = new Generator(seed);
  const normal =
    (std: number): ParamInit =>
    (name, shape, dtype) =>
      name === 'bias' ? zeros(shape, { dtype }) : randn(shape, { generator, std, dtype });
  return { generator, init: normal(0.02), projInit: normal(0.02 / Math.sqrt(2 * nLayer)) };
}

/** Token and position embeddings (with dropout): ids [B, T] i32 -> [B, T, C]. */
export class EmbeddingPipe extends Module<[Tensor], Tensor> {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  constructor(cfg: GPTConfig, seed: number) {
    super();
    const { generator, init } = gpt2Init(seed, cfg.nLayer);
    this.wte = this.registerModule('wte', new Embedding(cfg.vocabSize, cfg.nEmbd, { generator, init }));
    this.wpe = this.registerModule('wpe', new Embedding(cfg.blockSize, cfg.nEmbd, { generator, init }));
    this.drop = this.registerModule('drop', new Dropout(cfg.dropout ?? 0, { generator }));
  }
  forward(ids: Tensor): Tensor {
    const pos = arange(ids.shape[1]!, { dtype: 'i32' });
    const x = this.drop.call(add(this.wte.call(ids), this.wpe.call(pos))); // [B, T, C]
    pos.dispose();
    return x;
  }
}

/** One pre-LN transformer block of @ds/tensor, seeded by its own seed. */
export class BlockPipe extends Module<[Tensor], Tensor> {
  readonly block: Block;
  constructor(cfg: GPTConfig, seed: number) {
    super();
    const init = gpt2Init(seed, cfg.nLayer);
    this.block = this.registerModule('block', new Block(cfg, init.generator, init));
  }
  forward(x: Tensor): Tensor {
    return this.block.call(x);
  }
}

/** The final LayerNorm. */
export class FinalNormPipe extends Module<[Tensor], Tensor> {
  readonly ln_f: LayerNorm;
  constructor(cfg: GPTConfig) {
    super();
    this.ln_f = this.registerModule('ln_f', new LayerNorm(cfg.nEmbd));
  }
  forward(x: Tensor): Tensor {
    return this.ln_f.call(x);
  }
}

/** The layer list of a GPT: embed, nLayer blocks, final norm, LM head tied to the embedding. */
export function gptLayers(cfg: GPTConfig, baseSeed = cfg.seed ?? 0): (LayerSpec | TiedLayerSpec)[] {
  const embed = (opts = {}) => new TiedLayerSpec('embed', EmbeddingPipe, [cfg, baseSeed] as [GPTConfig, number], { tiedWeightAttr: ['wte.weight'], ...opts });
  return [
    embed(),
    ...Array.from({ length: cfg.nLayer }, (_, i) => new LayerSpec(BlockPipe, cfg, baseSeed + 1 + i)),
    new LayerSpec(FinalNormPipe, cfg),
    embed({ forwardFn: (m: Module, x: Tensor) => linear(x, (m as EmbeddingPipe).wte.weight) }), // [B, T, vocab]
  ];
}

/** A GPT as a PipelineModule, with cross-entropy over the logits as the loss. */
export function gptPipe(cfg: GPTConfig, opts: Omit<PipelineModuleOptions, 'layers' | 'lossFn'>): PipelineModule {
  return new PipelineModule({ ...opts, layers: gptLayers(cfg), lossFn: (logits, targets) => crossEntropy(logits, targets) });
}
