// FLOPs and MACs of one module call, from the module's type and the shapes its forward hook sees.
//
// DeepSpeed's flops profiler (deepspeed/profiling/flops_profiler/profiler.py) patches torch's
// functionals and counts each call; @ds/tensor's ops stay untouched here, so the count is made per
// module instead: each known module type gets a formula for the ops its own forward runs, children
// excluded (a child's call is counted by its own hook). A module's total is its own count plus its
// children's, as DeepSpeed sums its per-module lists. The formulas follow DeepSpeed's:
//   linear       MACs = rows x in x out, FLOPs = 2 MACs (the bias add is not counted, as in DeepSpeed)
//   embedding    0 (a row lookup)
//   layer norm   5 FLOPs per element (affine); the fused residual form adds 1 per element for the add
//   GELU         1 FLOP per element; dropout 0
//   attention    q k^T and att v: 2 x B x H x T x T x D MACs (the whole square, also when causal, as
//                torch.matmul counts it), plus 1 FLOP per score for the softmax
//   GPT (own)    token + position add (1 per element), the tied lm_head (a linear, vocab outputs),
//                cross-entropy counted as a softmax over the logits (1 per logit)
// Modules without a formula that run ops themselves are reported as such ("no formula"), so an
// undercount is visible rather than silent.
import { Block, CausalSelfAttention, Dropout, Embedding, GELU, GPT, LayerNorm, Linear, MLP, Tensor, type Module } from '@ds/tensor';

export interface OpCount {
  flops: number;
  macs: number;
}

const ZERO: OpCount = { flops: 0, macs: 0 };

function linearCount(input: Tensor, inFeatures: number, outFeatures: number): OpCount {
  const rows = input.numel / inFeatures;
  const macs = rows * inFeatures * outFeatures;
  return { flops: 2 * macs, macs };
}

/** q k^T, softmax and att v of a [B, T, C] input split into `heads` heads. */
export function attentionCount(b: number, t: number, c: number, heads: number): OpCount {
  const d = c / heads;
  const macs = 2 * b * heads * t * t * d;
  return { flops: 2 * macs + b * heads * t * t, macs };
}

function firstTensor(value: unknown): Tensor | undefined {
  if (value instanceof Tensor) return value;
  if (Array.isArray(value)) return value.find((v): v is Tensor => v instanceof Tensor);
  return undefined;
}

/**
 * The own count of `module` for a call with `args` giving `output`; undefined when the type has no
 * formula. Containers (a module whose forward only calls children) count zero.
 */
export function ownCount(module: Module, args: readonly unknown[], output: unknown): OpCount | undefined {
  const x = firstTensor(args[0]);
  if (module instanceof Linear) return x ? linearCount(x, module.inFeatures, module.outFeatures) : ZERO;
  if (module instanceof Embedding || module instanceof Dropout || module instanceof MLP) return ZERO;
  if (module instanceof LayerNorm) {
    if (!x) return ZERO;
    // callResidual([x, r]) adds r to x before normalising.
    const residual = args.length === 2 && args[1] instanceof Tensor ? x.numel : 0;
    return { flops: 5 * x.numel + residual, macs: 0 };
  }
  if (module instanceof GELU) return { flops: x?.numel ?? 0, macs: 0 };
  if (module instanceof CausalSelfAttention) {
    if (!x) return ZERO;
    const [b, t, c] = x.shape as [number, number, number];
    return attentionCount(b, t, c, module.nHead);
  }
  if (module instanceof Block) return { flops: firstTensor(output)?.numel ?? 0, macs: 0 }; // the second residual add
  if (module instanceof GPT) return gptOwnCount(module, args);
  return undefined;
}

/** What GPT.forward runs outside its child modules. */
function gptOwnCount(model: GPT, args: readonly unknown[]): OpCount {
  const ids = firstTensor(args[0]);
  if (!ids) return ZERO;
  const { nEmbd, vocabSize } = model.config;
  const tokens = ids.numel;
  const embedAdd = tokens * nEmbd;
  const head = 2 * tokens * nEmbd * vocabSize;
  const targets = args[1] instanceof Tensor;
  const loss = targets ? tokens * vocabSize : 0;
  return { flops: embedAdd + head + loss, macs: tokens * nEmbd * vocabSize };
}
