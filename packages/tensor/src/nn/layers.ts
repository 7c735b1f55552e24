// The basic layers: Linear, Embedding, LayerNorm, GELU, Dropout.

import { gelu, dropout } from '../ops/activation.js';
import { embedding } from '../ops/embedding.js';
import { addLayerNorm, layerNorm } from '../ops/layer-norm.js';
import { linear } from '../ops/matmul.js';
import { toDeviceRaw } from '../ops/device.js';
import { ones, randn, uniform, zeros } from '../create.js';
import type { DType } from '../dtype.js';
import { Generator } from '../random.js';
import type { Tensor } from '../tensor.js';
import { Module } from './module.js';
import { Parameter } from './parameter.js';

/**
 * Initial values of a layer's parameter `name` ('weight' or 'bias'), replacing the layer's default
 * init. It runs as the layer creates the parameter, so the parameter holds its final initial values
 * when it is registered (what a parameter hook such as ZeRO-3's zeroInit needs).
 */
export type ParamInit = (name: 'weight' | 'bias', shape: number[], dtype: DType | undefined) => Tensor;

export interface InitOptions {
  generator?: Generator;
  dtype?: DType;
  /** Overrides the default init (which draws from `generator`). */
  init?: ParamInit;
  /** Device of the parameters (default cpu); an init that returns a tensor elsewhere is moved here. */
  device?: string;
}

/** t on `device` (t itself when it is there or no device was asked for; else a copy, t disposed). */
function placed(t: Tensor, device: string | undefined): Tensor {
  if (device === undefined || t.device === device) return t;
  const moved = toDeviceRaw(t, device);
  t.dispose();
  return moved;
}

/** y = x W^T + b with W [out, in]; init uniform(+-1/sqrt(in)) as torch.nn.Linear. */
export class Linear extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: InitOptions & { bias?: boolean } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    const g = opts.generator ?? new Generator(0);
    const init: ParamInit = opts.init ?? ((_, shape, dtype) => uniform(shape, { generator: g, low: -bound, high: bound, dtype, device: opts.device }));
    this.weight = this.registerParameter('weight', Parameter.from(placed(init('weight', [outFeatures, inFeatures], opts.dtype), opts.device)))!;
    this.bias = opts.bias === false ? null : this.registerParameter('bias', Parameter.from(placed(init('bias', [outFeatures], opts.dtype), opts.device)));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Rows of weight [num, dim] looked up by i32 ids; init normal(0, 1) as torch.nn.Embedding. */
export class Embedding extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;
  constructor(readonly numEmbeddings: number, readonly dim: number, opts: InitOptions = {}) {
    super();
    const init: ParamInit = opts.init ?? ((_, shape, dtype) => randn(shape, { generator: opts.generator ?? new Generator(0), dtype, device: opts.device }));
    this.weight = this.registerParameter('weight', Parameter.from(placed(init('weight', [numEmbeddings, dim], opts.dtype), opts.device)))!;
  }
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight);
  }
}

export class LayerNorm extends Module<[Tensor], Tensor> {
  readonly weight: Parameter;
  readonly bias: Parameter;
  constructor(readonly dim: number, readonly eps = 1e-5, opts: { dtype?: DType; device?: string } = {}) {
    super();
    this.weight = this.registerParameter('weight', Parameter.from(ones([dim], { dtype: opts.dtype, device: opts.device })))!;
    this.bias = this.registerParameter('bias', Parameter.from(zeros([dim], { dtype: opts.dtype, device: opts.device })))!;
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
  /**
   * [x + r, this(x + r)] in one fused pass (addLayerNorm): a pre-LN block's residual add and the
   * layer norm after it. Runs under this module's hooks like call().
   */
  callResidual(x: Tensor, r: Tensor): [Tensor, Tensor] {
    return this.hooked([x, r], (a) => addLayerNorm(a[0] as Tensor, a[1] as Tensor, this.weight, this.bias, this.eps)) as [Tensor, Tensor];
  }
}

/** GELU, tanh approximation (GPT-2's). */
export class GELU extends Module<[Tensor], Tensor> {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}

/** Inverted dropout in training mode; each call draws a fresh mask seed from its generator. */
export class Dropout extends Module<[Tensor], Tensor> {
  readonly generator: Generator;
  constructor(readonly p: number, opts: { generator?: Generator; seed?: number } = {}) {
    super();
    this.generator = opts.generator ?? new Generator(opts.seed ?? 0);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    return dropout(x, this.p, { seed: this.generator.nextU32() });
  }
  protected override ownGenerators(): Generator[] {
    return [this.generator];
  }
}
