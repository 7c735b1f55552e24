// Causal self-attention with a pluggable attention kernel. The kernel sees q, k, v as contiguous
// [B, H, T, D] tensors and must return a differentiable [B, H, T, D] result; the default is the
// dense fused kernel of the kernel table. @ds/sparse-attn plugs its block-sparse kernel in here.

import { causalAttention } from '../ops/attention.js';
import { chunk, contiguous, permute, reshape } from '../ops/shape.js';
import type { Tensor } from '../tensor.js';
import { DSShapeError } from '../errors.js';
import { Dropout, Linear, type InitOptions, type ParamInit } from './layers.js';
import { Module } from './module.js';

export interface AttentionKernel {
  readonly name: string;
  /** q, k, v, result: [B, H, T, D]; query t may attend keys 0..t only. */
  attend(q: Tensor, k: Tensor, v: Tensor, opts: { scale: number }): Tensor;
}

export const denseCausalAttention: AttentionKernel = {
  name: 'dense',
  attend: (q, k, v, opts) => causalAttention(q, k, v, opts),
};

export interface SelfAttentionOptions extends InitOptions {
  nEmbd: number;
  nHead: number;
  bias?: boolean;
  dropout?: number;
  kernel?: AttentionKernel;
  /** Init of the output projection c_proj (GPT-2 scales it down); default `init`. */
  projInit?: ParamInit;
}

export class CausalSelfAttention extends Module<[Tensor], Tensor> {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  readonly nHead: number;
  kernel: AttentionKernel;

  constructor(opts: SelfAttentionOptions) {
    super();
    if (opts.nEmbd % opts.nHead !== 0) throw new DSShapeError(`CausalSelfAttention: nEmbd ${opts.nEmbd} is not a multiple of nHead ${opts.nHead}`);
    this.nHead = opts.nHead;
    this.kernel = opts.kernel ?? denseCausalAttention;
    this.c_attn = this.registerModule('c_attn', new Linear(opts.nEmbd, 3 * opts.nEmbd, opts));
    this.c_proj = this.registerModule('c_proj', new Linear(opts.nEmbd, opts.nEmbd, { ...opts, init: opts.projInit ?? opts.init }));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(opts.dropout ?? 0, { generator: opts.generator }));
  }

  forward(x: Tensor): Tensor {
    const [b, t, c] = x.shape as [number, number, number];
    const h = this.nHead;
    const d = c / h;
    const qkv = this.c_attn.call(x); // [B, T, 3C]
    // [B, T, 3, H, D] -> [3, B, H, T, D]: one copy, after which q, k, v are contiguous slices.
    const heads = contiguous(permute(reshape(qkv, [b, t, 3, h, d]), [2, 0, 3, 1, 4]));
    const [q, k, v] = chunk(heads, 3, 0).map((piece) => reshape(piece, [b, h, t, d])) as [Tensor, Tensor, Tensor];
    const y = this.kernel.attend(q, k, v, { scale: 1 / Math.sqrt(d) }); // [B, H, T, D]
    const merged = reshape(contiguous(permute(y, [0, 2, 1, 3])), [b, t, c]);
    return this.resid_dropout.call(this.c_proj.call(merged));
  }
}
