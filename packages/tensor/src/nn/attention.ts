// Self-attention with a pluggable attention kernel. The kernel sees q, k, v as contiguous
// [B, H, T, D] tensors and must return a differentiable [B, H, T, D] result, or (attendPacked) the
// fused projection's [B, T, 3C] output, returning [B, T, C]; the default is the dense kernel (the
// table's fused causal kernel when there are no masks, on the packed layout). @ds/core's registry
// selects another by name (a plugin's `attentionKernels`, e.g. @ds/sparse-attn's block-sparse one):
// a module built with `kernel: 'name'` keeps that name until initialize() resolves it.

import { DSShapeError, DSUnsupportedError } from '../errors.js';
import { causalAttentionPacked, maskedAttention, mergeHeads, splitHeads } from '../ops/attention.js';
import type { Tensor } from '../tensor.js';
import { Dropout, Linear, type InitOptions, type ParamInit } from './layers.js';
import { Module } from './module.js';

/** What an attention kernel is asked to compute. */
export interface AttendOptions {
  /** Multiplier of q k^T (1 / sqrt(D) for the usual scaling). */
  scale: number;
  /** True: query t attends keys 0..t only (GPT). False: every key (a BERT-like encoder). */
  causal: boolean;
  /** [B, T]: 1 keeps key j of sample b, 0 masks it out (DeepSpeed's key_padding_mask, 'mul' mode). */
  keyPaddingMask?: Tensor;
  /** Added to the scores before the softmax: [T, T] or broadcastable to [B, H, T, T] (DeepSpeed's attn_mask, 'add' mode). */
  attnMask?: Tensor;
}

/** One attention implementation: shared by @ds/tensor's modules and @ds/core's registry (`attentionKernels`). */
export interface AttentionKernel {
  readonly name: string;
  /** q, k, v, result: [B, H, T, D]. */
  attend(q: Tensor, k: Tensor, v: Tensor, opts: AttendOptions): Tensor;
  /**
   * Optional: the same from the fused projection's output, qkv [B, T, 3C] (q, k, v side by side in
   * each row, each [B, T, H, D]), to the heads merged, [B, T, C], for a kernel that can skip the
   * copies into and out of [B, H, T, D]. Modules call attend() on split heads when it is absent.
   */
  attendPacked?(qkv: Tensor, nHead: number, opts: AttendOptions): Tensor;
}

/** attend() between the head split of a packed qkv [B, T, 3C] and the merge back to [B, T, C]. */
export function attendViaHeads(kernel: AttentionKernel, qkv: Tensor, nHead: number, opts: AttendOptions): Tensor {
  const [q, k, v] = splitHeads(qkv, nHead);
  return mergeHeads(kernel.attend(q, k, v, opts));
}

export const DENSE_ATTENTION = 'dense';

export const denseAttention: AttentionKernel = {
  name: DENSE_ATTENTION,
  attend: (q, k, v, opts) => maskedAttention(q, k, v, opts),
  // Causal without masks reads the packed layout directly (the table's packed kernels); masks take
  // the general path on split heads.
  attendPacked: (qkv, nHead, opts) =>
    opts.causal && !opts.keyPaddingMask && !opts.attnMask ? causalAttentionPacked(qkv, nHead, { scale: opts.scale }) : attendViaHeads(denseAttention, qkv, nHead, opts),
};

/** A module whose attention kernel the registry may choose: initialize() visits every such module. */
export interface AttentionHost {
  /** The kernel's name: what the module was built with (`kernel: 'name'`), or the resolved kernel's. */
  readonly attentionKernelName: string;
  /** Installs a resolved kernel. */
  setAttentionKernel(kernel: AttentionKernel): void;
}

export function isAttentionHost(m: unknown): m is AttentionHost {
  return typeof m === 'object' && m !== null && typeof (m as AttentionHost).attentionKernelName === 'string' && typeof (m as AttentionHost).setAttentionKernel === 'function';
}

/** Stands in for a kernel known only by name until initialize() resolves it from the registry. */
function unresolved(name: string): AttentionKernel {
  return {
    name,
    attend: () => {
      throw new DSUnsupportedError(
        `attention kernel '${name}' comes from a plugin: pass the model to initialize() with the plugin that provides '${name}' registered (e.g. sparseAttention() from @ds/sparse-attn), or build the module with an AttentionKernel object`,
      );
    },
  };
}

export interface SelfAttentionOptions extends InitOptions {
  nEmbd: number;
  nHead: number;
  bias?: boolean;
  dropout?: number;
  /** An AttentionKernel, or the name of one a registered plugin provides (resolved by initialize()); default dense. */
  kernel?: AttentionKernel | string;
  /** Default true (GPT); false attends every key. */
  causal?: boolean;
  /** Init of the output projection c_proj (GPT-2 scales it down); default `init`. */
  projInit?: ParamInit;
}

export class CausalSelfAttention extends Module<[Tensor], Tensor> implements AttentionHost {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  readonly nHead: number;
  kernel: AttentionKernel;
  readonly causal: boolean;

  constructor(opts: SelfAttentionOptions) {
    super();
    if (opts.nEmbd % opts.nHead !== 0) throw new DSShapeError(`CausalSelfAttention: nEmbd ${opts.nEmbd} is not a multiple of nHead ${opts.nHead}`);
    this.nHead = opts.nHead;
    const k = opts.kernel ?? denseAttention;
    this.kernel = typeof k === 'string' ? (k === DENSE_ATTENTION ? denseAttention : unresolved(k)) : k;
    this.causal = opts.causal ?? true;
    this.c_attn = this.registerModule('c_attn', new Linear(opts.nEmbd, 3 * opts.nEmbd, opts));
    this.c_proj = this.registerModule('c_proj', new Linear(opts.nEmbd, opts.nEmbd, { ...opts, init: opts.projInit ?? opts.init }));
    this.resid_dropout = this.registerModule('resid_dropout', new Dropout(opts.dropout ?? 0, { generator: opts.generator }));
  }

  get attentionKernelName(): string {
    return this.kernel.name;
  }

  setAttentionKernel(kernel: AttentionKernel): void {
    this.kernel = kernel;
  }

  forward(x: Tensor): Tensor {
    const c = x.shape[x.rank - 1]!;
    const h = this.nHead;
    const d = c / h;
    const qkv = this.c_attn.call(x); // [B, T, 3C]
    const opts: AttendOptions = { scale: 1 / Math.sqrt(d), causal: this.causal };
    const merged = this.kernel.attendPacked ? this.kernel.attendPacked(qkv, h, opts) : attendViaHeads(this.kernel, qkv, h, opts); // [B, T, C]
    return this.resid_dropout.call(this.c_proj.call(merged));
  }
}
