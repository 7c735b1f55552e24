// The cpu backend: the KernelTable over the native addon (native/). Each entry checks that its sizes
// are non-negative integers and that every array has the element type of its dtype and at least the
// elements the sizes imply, throwing DSShapeError naming the op, the operand and the sizes; only
// then does it call into C++, which checks lengths once more. Errors the addon raises (an id out of
// range, say) come back as DSShapeError too.

import { DSNativeError, DSShapeError } from '../errors.js';
import type { FloatDType, HostAdamWArgs as AdamWArgs, HostFArray as FArray, HostGemmArgs as GemmArgs, HostKernelTable, KArray, KernelTable } from '../kernels/table.js';
import { hostOnly, type HostArray } from '../devices/device-array.js';
import { BINARY_CODE, code, dim, DTYPE_CODE, finite, floatCode, gatherSpan, UNARY_CODE, type AnyDType } from '../kernels/checks.js';
import { CPU_ISAS, loadCpuAddon, type CpuAddon, type CoresProbe, type CpuInfo, type PeakProbe } from '../native/load.js';

const ARRAY_FOR: Readonly<Record<AnyDType, string>> = {
  f32: 'Float32Array', bf16: 'Uint16Array', f16: 'Uint16Array', i32: 'Int32Array', u8: 'Uint8Array',
};

/** ISA names accepted by setIsa (and DS_CPU_ISA). */
export type CpuIsa = 'auto' | 'scalar' | 'avx2' | 'avx512' | 'amx';

/** The cpu KernelTable plus the machine controls tests and benchmarks use. */
export interface CpuKernels extends KernelTable {
  /** Forces a kernel path (or 'auto'); returns the ISA actually selected (the best the CPU has up to the request). */
  setIsa(isa: CpuIsa): string;
  cpuInfo(): CpuInfo;
  /** The ISAs this CPU can run, lowest first (always includes 'scalar'). */
  availableIsas(): string[];
  /** Measures one core's peak FMA / bf16-dot throughput for about `seconds` (benchmarks' denominator). */
  probePeak(seconds: number): PeakProbe;
  /**
   * probePeak's f32 FMA work on every pool thread at once for about `seconds`: per-core GFLOP/s of
   * the whole pool (over the whole time, and the best ~2 ms call). Well below probePeak's f32
   * figure, the cores were not all this process's while it ran (a hypervisor or another tenant took
   * some): the load average inside a VM does not show that.
   */
  probeCores(seconds: number): CoresProbe;
  /** AdamW's memory traffic without its math (p += g, m += g, v += g; 28 bytes per element): the bandwidth ceiling for AdamW. */
  streamProbe(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number): void;
}

/** A probe's duration: (0, 10] seconds. */
function probeSeconds(op: string, seconds: number): number {
  if (!(seconds > 0 && seconds <= 10)) throw new DSShapeError(`${op}: seconds must be in (0, 10], got ${seconds}`);
  return seconds;
}

function arr(op: string, name: string, a: KArray, dtype: AnyDType, count: number, sizes: string): asserts a is HostArray {
  hostOnly(op, name, a);
  const want = ARRAY_FOR[dtype];
  if (want === undefined) throw new DSShapeError(`${op}: unknown dtype '${dtype}' for ${name} (expected f32, bf16, f16, i32 or u8)`);
  // The internal [[TypedArrayName]] (what toStringTag reports) also accepts Buffers and other realms' arrays.
  const tag = ArrayBuffer.isView(a) ? Object.prototype.toString.call(a).slice(8, -1) : undefined;
  if (tag !== want) {
    const got = tag ?? (a === null ? 'null' : typeof a);
    throw new DSShapeError(`${op}: ${name} must be a ${want} for dtype ${dtype}, got ${got}`);
  }
  if (a.length < count) {
    throw new DSShapeError(`${op}: ${name} has ${a.length} elements but ${sizes} needs ${count}; pass a view of at least that length`);
  }
}

/** Runs a native call, turning the addon's TypeError/RangeError into DSShapeError and anything else into DSNativeError. */
function call<T>(op: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError || err instanceof TypeError) throw new DSShapeError(`${op}: ${err.message}`, { cause: err });
    throw new DSNativeError(`${op}: native kernel failed: ${(err as Error).message}`, { cause: err });
  }
}

function gemmChecks(g: GemmArgs): void {
  const op = 'gemm';
  if (g.dtype !== 'f32' && g.dtype !== 'bf16') throw new DSShapeError(`gemm: dtype must be f32 or bf16, got '${g.dtype}'`);
  if (g.outDtype !== 'f32' && g.outDtype !== 'bf16') throw new DSShapeError(`gemm: outDtype must be f32 or bf16, got '${g.outDtype}'`);
  for (const [name, v] of [['batch', g.batch], ['m', g.m], ['n', g.n], ['k', g.k], ['strideA', g.strideA], ['strideB', g.strideB], ['strideC', g.strideC]] as const) dim(op, name, v);
  finite(op, 'alpha', g.alpha);
  finite(op, 'beta', g.beta);
  const sizes = `batch=${g.batch} m=${g.m} n=${g.n} k=${g.k}`;
  const need = (stride: number, elems: number) => (g.batch === 0 || elems === 0 ? 0 : (g.batch - 1) * stride + elems);
  arr(op, 'a', g.a, g.dtype, need(g.strideA, g.m * g.k), `${sizes} strideA=${g.strideA}`);
  arr(op, 'b', g.b, g.dtype, need(g.strideB, g.k * g.n), `${sizes} strideB=${g.strideB}`);
  arr(op, 'c', g.c, g.outDtype, need(g.strideC, g.m * g.n), `${sizes} strideC=${g.strideC}`);
  if (g.batch > 1 && g.strideC < g.m * g.n) throw new DSShapeError(`gemm: strideC=${g.strideC} is below m*n=${g.m * g.n}, so outputs of the batch would overlap`);
}

function adamwChecks(a: AdamWArgs): void {
  const op = 'adamw';
  dim(op, 'n', a.n);
  const sizes = `n=${a.n}`;
  arr(op, 'param', a.param, 'f32', a.n, sizes);
  floatCode(op, a.gradDtype);
  arr(op, 'grad', a.grad, a.gradDtype, a.n, sizes);
  arr(op, 'expAvg', a.expAvg, 'f32', a.n, sizes);
  arr(op, 'expAvgSq', a.expAvgSq, 'f32', a.n, sizes);
  for (const [name, v] of [['lr', a.lr], ['beta1', a.beta1], ['beta2', a.beta2], ['eps', a.eps], ['weightDecay', a.weightDecay], ['gradScale', a.gradScale]] as const) finite(op, name, v);
  if (a.biasCorrection && !(a.step >= 1)) throw new DSShapeError(`adamw: step must be >= 1 with bias correction, got ${a.step}`);
  if (a.out16) {
    const d = a.out16Dtype ?? 'bf16';
    if (d !== 'bf16' && d !== 'f16') throw new DSShapeError(`adamw: out16Dtype must be bf16 or f16, got '${d}'`);
    arr(op, 'out16', a.out16, d, a.n, sizes);
  }
}

/** Creates the cpu kernel table (loading the addon on first use). */
export function createCpuKernels(): CpuKernels {
  const native: CpuAddon = loadCpuAddon();
  // gemm and gemmBias (checked by the caller): the same native product, with or without the bias row.
  const nativeGemm = (op: string, g: GemmArgs, bias: FArray | null) =>
    call(op, () =>
      native.gemm(DTYPE_CODE[g.dtype], DTYPE_CODE[g.outDtype], !!g.transA, !!g.transB, g.batch, g.m, g.n, g.k, g.alpha, g.beta,
        g.a, g.strideA, g.b, g.strideB, g.c, g.strideC, bias));
  const table: HostKernelTable & Omit<CpuKernels, keyof KernelTable> = {
    name: 'cpu',
    setNumThreads(n) {
      if (!Number.isInteger(n) || n < 1 || n > 1024) throw new DSShapeError(`setNumThreads: thread count must be an integer in [1, 1024], got ${n}`);
      call('setNumThreads', () => native.setNumThreads(n));
    },
    getNumThreads: () => native.cpuInfo().threads,
    setIsa(isa) {
      if (!CPU_ISAS.includes(isa)) throw new DSShapeError(`setIsa: '${isa}' is not one of ${CPU_ISAS.join(', ')}`);
      return call('setIsa', () => native.setIsa(isa));
    },
    cpuInfo: () => native.cpuInfo(),
    probePeak: (seconds) => call('probePeak', () => native.probePeak(probeSeconds('probePeak', seconds))),
    probeCores: (seconds) => call('probeCores', () => native.probeCores(probeSeconds('probeCores', seconds))),
    streamProbe(p, g, m, v, n) {
      const op = 'streamProbe';
      dim(op, 'n', n);
      for (const [name, x] of [['p', p], ['g', g], ['m', m], ['v', v]] as const) arr(op, name, x, 'f32', n, `n=${n}`);
      call(op, () => native.streamProbe(p, g, m, v, n));
    },
    availableIsas() {
      const i = native.cpuInfo();
      return ['scalar', ...(i.avx2 ? ['avx2'] : []), ...(i.avx512f ? ['avx512'] : []), ...(i.amx ? ['amx'] : [])];
    },

    cast(srcDtype, src, dstDtype, dst, n) {
      const op = 'cast';
      dim(op, 'n', n);
      arr(op, 'src', src, srcDtype, n, `n=${n}`);
      arr(op, 'dst', dst, dstDtype, n, `n=${n}`);
      call(op, () => native.cast(code(op, srcDtype), src, code(op, dstDtype), dst, n));
    },
    copy(src, dst, n) {
      const op = 'copy';
      dim(op, 'n', n);
      hostOnly(op, 'src', src);
      hostOnly(op, 'dst', dst);
      const tag = ArrayBuffer.isView(src) ? Object.prototype.toString.call(src).slice(8, -1) : '';
      const dtype = (Object.keys(ARRAY_FOR) as AnyDType[]).find((d) => ARRAY_FOR[d] === tag);
      if (!dtype) throw new DSShapeError(`copy: src must be a Float32Array, Uint16Array, Int32Array or Uint8Array`);
      arr(op, 'src', src, dtype, n, `n=${n}`);
      arr(op, 'dst', dst, dtype, n, `n=${n} (dst must have src's element type)`);
      call(op, () => native.copy(code(op, dtype), src, dst, n));
    },
    fill(dtype, x, n, value) {
      const op = 'fill';
      dim(op, 'n', n);
      arr(op, 'x', x, dtype, n, `n=${n}`);
      if (typeof value !== 'number') throw new DSShapeError(`fill: value must be a number`);
      call(op, () => native.fill(code(op, dtype), x, n, value));
    },
    gather(dtype, src, offset, shape, strides, dst) {
      const op = 'gather';
      const { total, srcNeeded, sizes } = gatherSpan(offset, shape, strides);
      arr(op, 'src', src, dtype, srcNeeded, sizes);
      arr(op, 'dst', dst, dtype, total, sizes);
      call(op, () => native.gather(code(op, dtype), src, offset, Float64Array.from(shape), Float64Array.from(strides), dst));
    },

    unary(uop, dtype, x, out, n) {
      const op = `unary(${uop})`;
      const u = UNARY_CODE[uop];
      if (u === undefined) throw new DSShapeError(`unary: unknown op '${uop}' (expected ${Object.keys(UNARY_CODE).join(', ')})`);
      dim(op, 'n', n);
      arr(op, 'x', x, dtype, n, `n=${n}`);
      arr(op, 'out', out, dtype, n, `n=${n}`);
      call(op, () => native.unary(u, floatCode(op, dtype), x, out, n));
    },
    binary(bop, dtype, a, b, out, n, bn) {
      const op = `binary(${bop})`;
      const o = BINARY_CODE[bop];
      if (o === undefined) throw new DSShapeError(`binary: unknown op '${bop}' (expected ${Object.keys(BINARY_CODE).join(', ')})`);
      dim(op, 'n', n);
      dim(op, 'bn', bn);
      if (n > 0 && (bn === 0 || n % bn !== 0)) throw new DSShapeError(`${op}: n=${n} must be a multiple of bn=${bn} (b repeats every bn elements)`);
      arr(op, 'a', a, dtype, n, `n=${n}`);
      arr(op, 'b', b, dtype, n > 0 ? bn : 0, `bn=${bn}`);
      arr(op, 'out', out, dtype, n, `n=${n}`);
      call(op, () => native.binary(o, floatCode(op, dtype), a, b, out, n, bn));
    },
    scale(dtype, x, out, n, alpha, beta) {
      const op = 'scale';
      dim(op, 'n', n);
      arr(op, 'x', x, dtype, n, `n=${n}`);
      arr(op, 'out', out, dtype, n, `n=${n}`);
      call(op, () => native.scale(floatCode(op, dtype), x, out, n, alpha, beta));
    },
    axpy(xDtype, x, yDtype, y, n, alpha) {
      const op = 'axpy';
      dim(op, 'n', n);
      if (yDtype !== 'f32' && yDtype !== xDtype) throw new DSShapeError(`axpy: y must be f32 or x's dtype (${xDtype}), got ${yDtype}`);
      arr(op, 'x', x, xDtype, n, `n=${n}`);
      arr(op, 'y', y, yDtype, n, `n=${n}`);
      call(op, () => native.axpy(floatCode(op, xDtype), x, floatCode(op, yDtype), y, n, alpha));
    },

    sum(dtype, x, n) {
      dim('sum', 'n', n);
      arr('sum', 'x', x, dtype, n, `n=${n}`);
      return call('sum', () => native.sum(floatCode('sum', dtype), x, n));
    },
    sumSquares(dtype, x, n) {
      dim('sumSquares', 'n', n);
      arr('sumSquares', 'x', x, dtype, n, `n=${n}`);
      return call('sumSquares', () => native.sumSquares(floatCode('sumSquares', dtype), x, n));
    },
    hasInfNan(dtype, x, n) {
      dim('hasInfNan', 'n', n);
      arr('hasInfNan', 'x', x, dtype, n, `n=${n}`);
      return call('hasInfNan', () => native.hasInfNan(floatCode('hasInfNan', dtype), x, n));
    },
    sumRows(dtype, x, rows, cols, out, accumulate) {
      const op = 'sumRows';
      dim(op, 'rows', rows);
      dim(op, 'cols', cols);
      arr(op, 'x', x, dtype, rows * cols, `[rows=${rows}, cols=${cols}]`);
      arr(op, 'out', out, 'f32', cols, `cols=${cols}`);
      call(op, () => native.sumRows(floatCode(op, dtype), x, rows, cols, out, accumulate));
    },
    sumLastDim(dtype, x, rows, cols, out) {
      const op = 'sumLastDim';
      dim(op, 'rows', rows);
      dim(op, 'cols', cols);
      arr(op, 'x', x, dtype, rows * cols, `[rows=${rows}, cols=${cols}]`);
      arr(op, 'out', out, dtype, rows, `rows=${rows}`);
      call(op, () => native.sumLastDim(floatCode(op, dtype), x, rows, cols, out));
    },

    gemm(g) {
      gemmChecks(g);
      nativeGemm('gemm', g, null);
    },

    gemmBias(g, bias) {
      gemmChecks(g);
      if (g.beta !== 0) throw new DSShapeError(`gemmBias: beta must be 0 (C starts from the bias), got ${g.beta}; for beta * C use gemm`);
      arr('gemmBias', 'bias', bias, g.outDtype, g.n, `n=${g.n}`);
      nativeGemm('gemmBias', g, bias);
    },

    ...nnKernels(native),

    adamw(a) {
      adamwChecks(a);
      call('adamw', () =>
        native.adamw(a.param, a.grad, DTYPE_CODE[a.gradDtype], a.expAvg, a.expAvgSq, a.n, a.lr, a.beta1, a.beta2, a.eps,
          a.weightDecay, a.step, a.biasCorrection, a.decoupled, a.gradScale, a.out16 ?? null, DTYPE_CODE[a.out16Dtype ?? 'bf16']));
    },
  };
  // Every entry checks its operands with arr(), which rejects a DeviceArray by name.
  return table as CpuKernels;
}

type NnKernels = Pick<HostKernelTable,
  | 'layerNormForward' | 'layerNormBackward' | 'layerNormResidualForward' | 'geluForward' | 'geluBackward' | 'softmaxForward' | 'softmaxBackward'
  | 'embeddingForward' | 'embeddingBackward' | 'crossEntropyForward' | 'crossEntropyBackward' | 'crossEntropyForwardGrad'
  | 'attentionForward' | 'attentionBackward' | 'attentionPackedForward' | 'attentionPackedBackward' | 'dropoutForward'>;

function nnKernels(native: CpuAddon): NnKernels {
  const rowsCols = (op: string, rows: number, cols: number) => {
    dim(op, 'rows', rows);
    dim(op, 'cols', cols);
    return `[rows=${rows}, cols=${cols}]`;
  };
  const each = (op: string, dtype: FloatDType, n: number, sizes: string, named: Record<string, FArray>) => {
    for (const [name, a] of Object.entries(named)) arr(op, name, a, dtype, n, sizes);
  };
  // The packed attention kernels' sizes, checked, as the text their errors quote.
  const packedDims = (op: string, b: number, t: number, heads: number, d: number) => {
    for (const [name, x] of [['b', b], ['t', t], ['heads', heads], ['d', d]] as const) dim(op, name, x);
    return `[b=${b}, t=${t}, heads=${heads}, d=${d}]`;
  };
  return {
    layerNormForward(dtype, x, weight, bias, y, mean, rstd, rows, cols, eps) {
      const op = 'layerNormForward';
      const s = rowsCols(op, rows, cols);
      each(op, dtype, rows * cols, s, { x, y });
      each(op, dtype, cols, s, { weight, bias });
      each(op, 'f32', rows, s, { mean, rstd });
      finite(op, 'eps', eps);
      call(op, () => native.layerNormForward(floatCode(op, dtype), x, weight, bias, y, mean, rstd, rows, cols, eps));
    },
    layerNormResidualForward(dtype, x, r, weight, bias, sum, y, mean, rstd, rows, cols, eps) {
      const op = 'layerNormResidualForward';
      const s = rowsCols(op, rows, cols);
      each(op, dtype, rows * cols, s, { x, r, sum, y });
      each(op, dtype, cols, s, { weight, bias });
      each(op, 'f32', rows, s, { mean, rstd });
      finite(op, 'eps', eps);
      call(op, () => native.layerNormResidualForward(floatCode(op, dtype), x, r, weight, bias, sum, y, mean, rstd, rows, cols, eps));
    },
    layerNormBackward(dtype, dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols) {
      const op = 'layerNormBackward';
      const s = rowsCols(op, rows, cols);
      each(op, dtype, rows * cols, s, { dy, x, dx });
      each(op, dtype, cols, s, { weight });
      each(op, 'f32', rows, s, { mean, rstd });
      each(op, 'f32', cols, s, { dweight, dbias });
      call(op, () => native.layerNormBackward(floatCode(op, dtype), dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols));
    },
    geluForward(dtype, x, y, n) {
      const op = 'geluForward';
      dim(op, 'n', n);
      each(op, dtype, n, `n=${n}`, { x, y });
      call(op, () => native.geluForward(floatCode(op, dtype), x, y, n));
    },
    geluBackward(dtype, dy, x, dx, n) {
      const op = 'geluBackward';
      dim(op, 'n', n);
      each(op, dtype, n, `n=${n}`, { dy, x, dx });
      call(op, () => native.geluBackward(floatCode(op, dtype), dy, x, dx, n));
    },
    softmaxForward(dtype, x, y, rows, cols) {
      const op = 'softmaxForward';
      each(op, dtype, rows * cols, rowsCols(op, rows, cols), { x, y });
      call(op, () => native.softmaxForward(floatCode(op, dtype), x, y, rows, cols));
    },
    softmaxBackward(dtype, dy, y, dx, rows, cols) {
      const op = 'softmaxBackward';
      each(op, dtype, rows * cols, rowsCols(op, rows, cols), { dy, y, dx });
      call(op, () => native.softmaxBackward(floatCode(op, dtype), dy, y, dx, rows, cols));
    },
    embeddingForward(dtype, ids, table, out, n, vocab, dim_) {
      const op = 'embeddingForward';
      for (const [name, v] of [['n', n], ['vocab', vocab], ['dim', dim_]] as const) dim(op, name, v);
      const s = `n=${n} vocab=${vocab} dim=${dim_}`;
      arr(op, 'ids', ids, 'i32', n, s);
      arr(op, 'table', table, dtype, vocab * dim_, s);
      arr(op, 'out', out, dtype, n * dim_, s);
      call(op, () => native.embeddingForward(floatCode(op, dtype), ids, table, out, n, vocab, dim_));
    },
    embeddingBackward(dtype, dout, ids, dtable, n, vocab, dim_) {
      const op = 'embeddingBackward';
      for (const [name, v] of [['n', n], ['vocab', vocab], ['dim', dim_]] as const) dim(op, name, v);
      const s = `n=${n} vocab=${vocab} dim=${dim_}`;
      arr(op, 'dout', dout, dtype, n * dim_, s);
      arr(op, 'ids', ids, 'i32', n, s);
      arr(op, 'dtable', dtable, 'f32', vocab * dim_, s);
      call(op, () => native.embeddingBackward(floatCode(op, dtype), dout, ids, dtable, n, vocab, dim_));
    },
    crossEntropyForward(dtype, logits, targets, losses, lse, rows, vocab) {
      const op = 'crossEntropyForward';
      const s = rowsCols(op, rows, vocab).replace('cols', 'vocab');
      arr(op, 'logits', logits, dtype, rows * vocab, s);
      arr(op, 'targets', targets, 'i32', rows, s);
      each(op, 'f32', rows, s, { losses, lse });
      call(op, () => native.crossEntropyForward(floatCode(op, dtype), logits, targets, losses, lse, rows, vocab));
    },
    crossEntropyForwardGrad(dtype, logits, targets, losses, lse, dlogits, scale, rows, vocab) {
      const op = 'crossEntropyForwardGrad';
      const s = rowsCols(op, rows, vocab).replace('cols', 'vocab');
      each(op, dtype, rows * vocab, s, { logits, dlogits });
      arr(op, 'targets', targets, 'i32', rows, s);
      each(op, 'f32', rows, s, { losses, lse });
      finite(op, 'scale', scale);
      call(op, () => native.crossEntropyForwardGrad(floatCode(op, dtype), logits, targets, losses, lse, dlogits, scale, rows, vocab));
    },
    crossEntropyBackward(dtype, logits, targets, lse, dloss, dlogits, rows, vocab) {
      const op = 'crossEntropyBackward';
      const s = rowsCols(op, rows, vocab).replace('cols', 'vocab');
      each(op, dtype, rows * vocab, s, { logits, dlogits });
      arr(op, 'targets', targets, 'i32', rows, s);
      each(op, 'f32', rows, s, { lse, dloss });
      call(op, () => native.crossEntropyBackward(floatCode(op, dtype), logits, targets, lse, dloss, dlogits, rows, vocab));
    },
    attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale) {
      const op = 'attentionForward';
      for (const [name, x] of [['bh', bh], ['t', t], ['d', d]] as const) dim(op, name, x);
      const s = `[bh=${bh}, t=${t}, d=${d}]`;
      each(op, dtype, bh * t * d, s, { q, k, v, out });
      arr(op, 'lse', lse, 'f32', bh * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionForward(floatCode(op, dtype), q, k, v, out, lse, bh, t, d, scale));
    },
    attentionBackward(dtype, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale) {
      const op = 'attentionBackward';
      for (const [name, x] of [['bh', bh], ['t', t], ['d', d]] as const) dim(op, name, x);
      const s = `[bh=${bh}, t=${t}, d=${d}]`;
      each(op, dtype, bh * t * d, s, { dout, q, k, v, out, dq, dk, dv });
      arr(op, 'lse', lse, 'f32', bh * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionBackward(floatCode(op, dtype), dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale));
    },
    attentionPackedForward(dtype, qkv, out, lse, b, t, heads, d, scale) {
      const op = 'attentionPackedForward';
      const s = packedDims(op, b, t, heads, d);
      arr(op, 'qkv', qkv, dtype, b * t * 3 * heads * d, `${s} (qkv is [b, t, 3, heads, d])`);
      arr(op, 'out', out, dtype, b * t * heads * d, `${s} (out is [b, t, heads, d])`);
      arr(op, 'lse', lse, 'f32', b * heads * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionPackedForward(floatCode(op, dtype), qkv, out, lse, b, t, heads, d, scale));
    },
    attentionPackedBackward(dtype, dout, qkv, out, lse, dqkv, b, t, heads, d, scale) {
      const op = 'attentionPackedBackward';
      const s = packedDims(op, b, t, heads, d);
      each(op, dtype, b * t * 3 * heads * d, `${s} (qkv, dqkv are [b, t, 3, heads, d])`, { qkv, dqkv });
      each(op, dtype, b * t * heads * d, `${s} (out, dout are [b, t, heads, d])`, { out, dout });
      arr(op, 'lse', lse, 'f32', b * heads * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionPackedBackward(floatCode(op, dtype), dout, qkv, out, lse, dqkv, b, t, heads, d, scale));
    },
    dropoutForward(dtype, x, out, mask, n, p, seed, offset) {
      const op = 'dropoutForward';
      dim(op, 'n', n);
      dim(op, 'seed', seed);
      dim(op, 'offset', offset);
      if (!(p >= 0 && p <= 1)) throw new DSShapeError(`dropoutForward: p must be in [0, 1], got ${p}`);
      each(op, dtype, n, `n=${n}`, { x, out });
      arr(op, 'mask', mask, 'u8', n, `n=${n}`);
      call(op, () => native.dropoutForward(floatCode(op, dtype), x, out, mask, n, p, seed, offset));
    },
  };
}
