// The kernel table: the one contract between tensor ops (src/ops, autograd, nn) and a backend.
//
// A backend (src/backends/cpu.ts over the native addon; src/reference/ in plain TypeScript, which is
// the specification; later cuda) implements `KernelTable`. Ops in TypeScript validate shapes and
// dtypes, allocate outputs, then call exactly one table entry per kernel. Kernels never allocate
// tensors and never throw for a reason the op could have checked first.
//
// Conventions:
// - Every operand starts at the operand's first element, laid out contiguous row-major, and lives
//   on the table's device: a typed array for cpu (host) memory, a DeviceArray (devices/device-array.ts)
//   for any other device, whose bytes JavaScript cannot read. Ops pass `tensor.operand()`.
// - Element arrays by dtype: f32 -> Float32Array, bf16 and f16 -> Uint16Array (raw bits),
//   i32 -> Int32Array, u8 -> Uint8Array (or a DeviceArray of that kind). `KArray` is their union.
// - Results returned as numbers (sum, sumSquares, hasInfNan) wait for the device.
// - Floating kernels take a `dtype` for their tensor operands ('f32' | 'bf16' | 'f16', all operands of
//   that kernel share it unless the signature says otherwise) and compute in f32. Statistics saved
//   for backward (mean, rstd, lse) are always f32.
// - "accumulate" outputs (parameter gradients) are f32 and are added into, never overwritten.
// - Shapes are passed as plain integers; comments give them as [dims].
//
// Extending: add entries, never change an existing one's meaning (both backends must follow).

import type { DeviceArray, HostArray, Operand } from '../devices/device-array.js';

export type FloatDType = 'f32' | 'bf16' | 'f16';
/** Any operand: host memory as a typed array (cpu), device memory as a DeviceArray (sim, cuda). */
export type KArray = Operand;
/** A float operand: f32 elements, or bf16/f16 bits. */
export type FArray = Operand<Float32Array> | Operand<Uint16Array>;
export type F32 = Operand<Float32Array>;
export type U16 = Operand<Uint16Array>;
export type I32 = Operand<Int32Array>;
export type U8 = Operand<Uint8Array>;

// What a host-memory table (cpu, reference) sees: the same signatures without DeviceArray. The
// runtime hands a table only operands of its own device, and the host tables check it anyway.
export type HostKArray = HostArray;
export type HostFArray = Float32Array | Uint16Array;
export type HostOnly<T> = { [K in keyof T]: Exclude<T[K], DeviceArray<any>> };

/** sign: -1, 0 or +1 (NaN stays NaN; -0 stays -0). */
export type UnaryOp = 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'relu' | 'abs' | 'square' | 'sigmoid' | 'sign';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'max' | 'min';

export interface GemmArgs {
  /** dtype of A and B: f32, or bf16 inputs with f32 accumulation. */
  dtype: 'f32' | 'bf16';
  /** dtype of C; may differ from A/B (bf16 inputs into an f32 C, e.g. gradient accumulation). */
  outDtype: 'f32' | 'bf16';
  transA: boolean;
  transB: boolean;
  /** Number of independent products; operand i starts at i * stride (stride 0 broadcasts). */
  batch: number;
  m: number;
  n: number;
  k: number;
  /** C = alpha * op(A) @ op(B) + beta * C. op(A) is [m, k]: A is [m, k], or [k, m] when transA. */
  alpha: number;
  beta: number;
  a: FArray;
  strideA: number;
  /** op(B) is [k, n]: B is [k, n], or [n, k] when transB. */
  b: FArray;
  strideB: number;
  c: FArray;
  strideC: number;
}

export interface AdamWArgs {
  /** f32 master weights [n], updated in place. */
  param: F32;
  /** gradient [n] in gradDtype; multiplied by gradScale before use (1/lossScale times the clip coefficient). */
  grad: FArray;
  gradDtype: FloatDType;
  /** f32 first and second moments [n], updated in place. */
  expAvg: F32;
  expAvgSq: F32;
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count used for bias correction. */
  step: number;
  biasCorrection: boolean;
  /** true: decoupled weight decay (AdamW); false: L2 added to the gradient (Adam). */
  decoupled: boolean;
  gradScale: number;
  /** Optional low-precision copy written in the same pass ([n], bf16 or f16 bits). */
  out16?: U16;
  out16Dtype?: 'bf16' | 'f16';
}

export interface KernelTable {
  readonly name: string;

  // ---- threads and ISA --------------------------------------------------------------------------
  setNumThreads(n: number): void;
  getNumThreads(): number;

  // ---- data movement ----------------------------------------------------------------------------
  /** dst[i] = convert(src[i]); f32<->bf16 uses round-to-nearest-even, NaN stays NaN. */
  cast(srcDtype: 'f32' | 'bf16' | 'f16' | 'i32' | 'u8', src: KArray, dstDtype: 'f32' | 'bf16' | 'f16' | 'i32' | 'u8', dst: KArray, n: number): void;
  /** dst[i] = src[i] for n elements of one dtype (memcpy). */
  copy(src: KArray, dst: KArray, n: number): void;
  /** x[i] = value for n elements (bf16/f16 get the rounded bits). */
  fill(dtype: FloatDType | 'i32' | 'u8', x: KArray, n: number, value: number): void;
  /**
   * Strided copy of a view into a contiguous array: dst[j] = src[offset + sum_d idx_d * strides[d]]
   * over `shape` (row-major enumeration). Makes transposes, slices and broadcasts contiguous.
   */
  gather(dtype: FloatDType | 'i32' | 'u8', src: KArray, offset: number, shape: readonly number[], strides: readonly number[], dst: KArray): void;

  // ---- elementwise ------------------------------------------------------------------------------
  unary(op: UnaryOp, dtype: FloatDType, x: FArray, out: FArray, n: number): void;
  /**
   * out[i] = op(a[i], b[i % bn]) for i < n. bn === n: same shape; bn === 1: scalar b; otherwise b
   * repeats every bn elements (a row vector broadcast over the leading dims, as a bias is).
   */
  binary(op: BinaryOp, dtype: FloatDType, a: FArray, b: FArray, out: FArray, n: number, bn: number): void;
  /** out[i] = alpha * x[i] + beta (out may be x). */
  scale(dtype: FloatDType, x: FArray, out: FArray, n: number, alpha: number, beta: number): void;
  /** y[i] += alpha * x[i]; x in xDtype, y f32 or the same dtype as x. Used to accumulate gradients. */
  axpy(xDtype: FloatDType, x: FArray, yDtype: FloatDType, y: FArray, n: number, alpha: number): void;

  // ---- reductions (accumulate in f64 where the result is a number) ---------------------------------
  sum(dtype: FloatDType, x: FArray, n: number): number;
  /** sum of x[i]^2 (the building block of global-norm clipping). */
  sumSquares(dtype: FloatDType, x: FArray, n: number): number;
  /** true if any element is +-Inf or NaN (loss-scaling overflow check). */
  hasInfNan(dtype: FloatDType, x: FArray, n: number): boolean;
  /** x [rows, cols] -> out [cols] (sum over rows, f32 out, accumulate when `accumulate`). Bias grads. */
  sumRows(dtype: FloatDType, x: FArray, rows: number, cols: number, out: F32, accumulate: boolean): void;
  /** x [rows, cols] -> out [rows] (sum over the last dim, out in dtype). */
  sumLastDim(dtype: FloatDType, x: FArray, rows: number, cols: number, out: FArray): void;

  // ---- linear algebra ---------------------------------------------------------------------------
  gemm(args: GemmArgs): void;
  /**
   * Optional: gemm whose every C (each row, each product of the batch) starts from `bias` [n] in
   * outDtype, as gemm with beta = 1 onto C filled with the bias row, without that separate pass over C
   * (a Linear layer's bias). args.beta must be 0.
   */
  gemmBias?(args: GemmArgs, bias: FArray): void;

  // ---- nn kernels -------------------------------------------------------------------------------
  /** x, y [rows, cols]; mean, rstd [rows] f32 (saved for backward); weight, bias [cols] in dtype. */
  layerNormForward(dtype: FloatDType, x: FArray, weight: FArray, bias: FArray, y: FArray, mean: F32, rstd: F32, rows: number, cols: number, eps: number): void;
  /** dx [rows, cols] overwritten; dweight, dbias [cols] f32 accumulated. */
  layerNormBackward(dtype: FloatDType, dy: FArray, x: FArray, weight: FArray, mean: F32, rstd: F32, dx: FArray, dweight: F32, dbias: F32, rows: number, cols: number): void;
  /**
   * A residual add fused with the layer norm after it (pre-LN transformers: h = x + f(x), then
   * LN(h)): sum = x + r rounded to dtype, then y, mean and rstd exactly as layerNormForward of sum.
   * x, r, sum, y [rows, cols]. Backward is layerNormBackward on sum plus the sum's own gradient.
   */
  layerNormResidualForward(dtype: FloatDType, x: FArray, r: FArray, weight: FArray, bias: FArray, sum: FArray, y: FArray, mean: F32, rstd: F32, rows: number, cols: number, eps: number): void;
  /** GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  geluForward(dtype: FloatDType, x: FArray, y: FArray, n: number): void;
  geluBackward(dtype: FloatDType, dy: FArray, x: FArray, dx: FArray, n: number): void;
  /** softmax over the last dim: x, y [rows, cols]. */
  softmaxForward(dtype: FloatDType, x: FArray, y: FArray, rows: number, cols: number): void;
  softmaxBackward(dtype: FloatDType, dy: FArray, y: FArray, dx: FArray, rows: number, cols: number): void;
  /** ids [n] i32 in [0, vocab); table [vocab, dim]; out [n, dim]. */
  embeddingForward(dtype: FloatDType, ids: I32, table: FArray, out: FArray, n: number, vocab: number, dim: number): void;
  /** dtable [vocab, dim] f32 accumulated with dout [n, dim] rows at ids. */
  embeddingBackward(dtype: FloatDType, dout: FArray, ids: I32, dtable: F32, n: number, vocab: number, dim: number): void;
  /**
   * Fused softmax + cross-entropy over logits [rows, vocab] with targets [rows] (-1 = ignored row):
   * losses [rows] f32 (0 for ignored rows), lse [rows] f32 (log-sum-exp, saved for backward).
   */
  crossEntropyForward(dtype: FloatDType, logits: FArray, targets: I32, losses: F32, lse: F32, rows: number, vocab: number): void;
  /** dlogits [rows, vocab] = dloss[r] * (softmax - onehot(target)); ignored rows get 0. */
  crossEntropyBackward(dtype: FloatDType, logits: FArray, targets: I32, lse: F32, dloss: F32, dlogits: FArray, rows: number, vocab: number): void;
  /**
   * Optional: crossEntropyForward that also writes crossEntropyBackward's dlogits for dloss = scale on
   * every row (each row read and exponentiated once instead of twice). Backends without it run the two.
   */
  crossEntropyForwardGrad?(dtype: FloatDType, logits: FArray, targets: I32, losses: F32, lse: F32, dlogits: FArray, scale: number, rows: number, vocab: number): void;
  /**
   * Causal scaled-dot-product attention. q, k, v, out [batch*heads, T, D]; lse [batch*heads, T] f32.
   * out = softmax(mask(q k^T * scale)) v with query t attending keys 0..t.
   */
  attentionForward(dtype: FloatDType, q: FArray, k: FArray, v: FArray, out: FArray, lse: F32, bh: number, t: number, d: number, scale: number): void;
  /** dq, dk, dv [batch*heads, T, D] overwritten. */
  attentionBackward(dtype: FloatDType, dout: FArray, q: FArray, k: FArray, v: FArray, out: FArray, lse: F32, dq: FArray, dk: FArray, dv: FArray, bh: number, t: number, d: number, scale: number): void;
  /**
   * Optional: attentionForward on GPT's packed layout, with no copies into and out of [B, H, T, D]:
   * qkv [b, t, 3, heads, d] (q, k, v side by side in each row, as c_attn writes them), out
   * [b, t, heads, d], lse [b * heads, t] f32. Backends without it permute around attentionForward.
   */
  attentionPackedForward?(dtype: FloatDType, qkv: FArray, out: FArray, lse: F32, b: number, t: number, heads: number, d: number, scale: number): void;
  /** Optional: attentionBackward on the packed layout; dqkv [b, t, 3, heads, d] overwritten (every element). */
  attentionPackedBackward?(dtype: FloatDType, dout: FArray, qkv: FArray, out: FArray, lse: F32, dqkv: FArray, b: number, t: number, heads: number, d: number, scale: number): void;
  /**
   * Inverted dropout: out = x * mask / (1 - p), mask[i] in {0, 1} u8. The mask is counter-based, so
   * it depends on (seed, offset + i) only, never on threads. With 32-bit unsigned arithmetic:
   *   h = (seed + imul(offset + i, 0x9E3779B9)) >>> 0
   *   h ^= h >>> 16; h = imul(h, 0x85EBCA6B); h ^= h >>> 13; h = imul(h, 0xC2B2AE35); h ^= h >>> 16
   *   mask[i] = ((h >>> 8) / 2^24) >= p ? 1 : 0
   */
  dropoutForward(dtype: FloatDType, x: FArray, out: FArray, mask: U8, n: number, p: number, seed: number, offset: number): void;

  // ---- optimizers -------------------------------------------------------------------------------
  adamw(args: AdamWArgs): void;
}

export type HostGemmArgs = HostOnly<GemmArgs>;
export type HostAdamWArgs = HostOnly<AdamWArgs>;

type StripDevice<T> = T extends DeviceArray<any> ? never : T extends HostArray ? T : T extends readonly unknown[] ? T : T extends object ? HostOnly<T> : T;
/**
 * A kernel table over host memory (the cpu and reference tables implement this): each operand type
 * without its DeviceArray half. It is assignable to KernelTable; such a table rejects a DeviceArray at run time.
 */
export type HostKernelTable = {
  [K in keyof KernelTable]: NonNullable<KernelTable[K]> extends (...args: infer A) => infer R ? (...args: { [I in keyof A]: StripDevice<A[I]> }) => R : KernelTable[K];
};
