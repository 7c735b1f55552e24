// SparseSelfAttention: DeepSpeed's ops/sparse_attention/sparse_self_attention.py as an
// AttentionKernel of @ds/tensor, so CausalSelfAttention (GPT) and a bidirectional encoder use it by
// name or from the config without code changes. It builds the layout for each sequence length it
// sees (or slices a master layout made for maxSeqLength, as DeepSpeed does), turns it into a plan
// once per (heads, length, causal) and runs blockSparseAttention.
// Differences from DeepSpeed: the module's `causal` masks keys after the query token by token (the
// diagonal blocks inside), where DeepSpeed's layouts are causal only block by block and need an
// attn_mask for that; key_padding_mask is 'mul' (1 keeps) and attn_mask is 'add', the two modes
// @ds/tensor's AttendOptions define.
import { DSShapeError, type AttendOptions, type AttentionKernel, type Tensor } from '@ds/tensor';

import { blockSparseAttention } from './block-sparse-attention.js';
import { BlockLayout } from './layout/layout.js';
import type { SparsityConfig } from './layout/sparsity-config.js';
import { checkBlock, planLayout, type BlockPlan } from './plan.js';

export const SPARSE_ATTENTION = 'sparse';

export interface SparseSelfAttentionOptions {
  /** The pattern: a SparsityConfig, or a maker given the layer's head count (the plugin's form). */
  sparsity: SparsityConfig | ((numHeads: number) => SparsityConfig);
  /** Build one layout for this length and slice it for shorter sequences (DeepSpeed's master_layout); default: a layout per length. */
  maxSeqLength?: number;
}

export class SparseSelfAttention implements AttentionKernel {
  readonly name = SPARSE_ATTENTION;
  private readonly configs = new Map<number, SparsityConfig>();
  private readonly layouts = new Map<string, BlockLayout>();
  private readonly plans = new Map<string, BlockPlan>();

  constructor(private readonly opts: SparseSelfAttentionOptions) {
    if (typeof opts.sparsity !== 'function') checkBlock(opts.sparsity.block, 'SparseSelfAttention');
  }

  /** The SparsityConfig used for a layer with `numHeads` heads. */
  sparsityFor(numHeads: number): SparsityConfig {
    let c = this.configs.get(numHeads);
    if (!c) {
      const s = this.opts.sparsity;
      c = typeof s === 'function' ? s(numHeads) : s;
      checkBlock(c.block, 'SparseSelfAttention');
      if (c.numHeads !== numHeads) throw new DSShapeError(`SparseSelfAttention: the sparsity config is for ${c.numHeads} heads but q has ${numHeads}`);
      this.configs.set(numHeads, c);
    }
    return c;
  }

  /** The block layout [heads, T/block, T/block] for a sequence of seqLen tokens. */
  layoutFor(numHeads: number, seqLen: number): BlockLayout {
    const key = `${numHeads}:${seqLen}`;
    let l = this.layouts.get(key);
    if (l) return l;
    const sc = this.sparsityFor(numHeads);
    if (seqLen % sc.block !== 0) {
      throw new DSShapeError(`SparseSelfAttention: sequence length ${seqLen} is not a multiple of the block size ${sc.block}; pad the batch with padToBlockSize (and unpad the output) or use a length divisible by ${sc.block}`);
    }
    const max = this.opts.maxSeqLength;
    if (max === undefined) {
      l = sc.makeLayout(seqLen);
    } else {
      if (seqLen > max) throw new DSShapeError(`SparseSelfAttention: sequence length ${seqLen} exceeds maxSeqLength ${max}; build the kernel with a larger maxSeqLength`);
      const masterKey = `${numHeads}:master`;
      let master = this.layouts.get(masterKey);
      if (!master) this.layouts.set(masterKey, (master = sc.makeLayout(max - (max % sc.block))));
      l = sliceLayout(master, seqLen / sc.block);
    }
    this.layouts.set(key, l);
    return l;
  }

  planFor(numHeads: number, seqLen: number, causal: boolean): BlockPlan {
    const key = `${numHeads}:${seqLen}:${causal}`;
    let p = this.plans.get(key);
    if (!p) {
      const sc = this.sparsityFor(numHeads);
      p = planLayout(this.layoutFor(numHeads, seqLen), sc.block, causal, `SparseSelfAttention (${sc.constructor.name}, ${seqLen} tokens)`);
      this.plans.set(key, p);
    }
    return p;
  }

  attend(q: Tensor, k: Tensor, v: Tensor, opts: AttendOptions): Tensor {
    if (q.rank !== 4) throw new DSShapeError(`SparseSelfAttention: q must be [B, H, T, D], got [${q.shape.join(', ')}]`);
    const [, h, t] = q.shape as [number, number, number, number];
    const plan = this.planFor(h, t, opts.causal);
    return blockSparseAttention(q, k, v, plan, { scale: opts.scale, keyPaddingMask: opts.keyPaddingMask, attnMask: opts.attnMask });
  }
}

/** The top-left nb x nb blocks of every head (DeepSpeed's master_layout[..., :nb, :nb]). */
function sliceLayout(master: BlockLayout, nb: number): BlockLayout {
  if (master.blocks === nb) return master;
  const out = new BlockLayout(master.heads, nb);
  for (let h = 0; h < master.heads; h++) for (let r = 0; r < nb; r++) for (let c = 0; c < nb; c++) out.set(h, r, c, master.get(h, r, c));
  return out;
}
