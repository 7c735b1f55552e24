// The cuda device: a DeviceBackend over the cuda addon (native/cuda/), loaded by
// src/native/load-cuda.ts. Memory comes from the addon's caching allocator (size-class free lists,
// like PyTorch's CUDACachingAllocator, without its block splitting); host copies go through pinned
// staging; every kernel is queued on the device's compute stream, so calls return before the GPU
// has finished, and only results that are numbers (sum, sumSquares, hasInfNan) and copies to the
// host wait. A second stream for communication and events to order the two are exposed for
// @ds/comm-nccl. One process drives one GPU (DeepSpeed's one rank per device).
//
// Every kernel entry checks, before calling the addon, that its operands are DeviceArrays of this
// device with the element kind of their dtype and at least the elements the sizes imply (a
// DSShapeError naming the op and the operand); the addon checks once more that each operand's
// extent lies inside one live allocation.
import { DSNativeError, DSOutOfMemoryError, DSShapeError, DSUnsupportedError } from '../errors.js';
import type { AdamWArgs, GemmArgs, KArray, KernelTable } from '../kernels/table.js';
import { DeviceArray, type DeviceAllocation, type ElementKind, type HostArray } from './device-array.js';
import { BINARY_CODE, code, dim, DTYPE_CODE, finite, floatCode, gatherSpan, UNARY_CODE, type AnyDType } from '../kernels/checks.js';
import type { DeviceBackend } from './types.js';
import { loadCudaAddon, type CudaAddon, type CudaMemoryStats } from '../native/load-cuda.js';

type StreamName = 'compute' | 'comm';

const KIND: Readonly<Record<AnyDType, ElementKind>> = { f32: 'f32', bf16: 'u16', f16: 'u16', i32: 'i32', u8: 'u8' };
const STREAM: Readonly<Record<StreamName, 0 | 1>> = { compute: 0, comm: 1 };

/** A cuda event (cudaEvent_t) for ordering the compute and communication streams. */
export interface CudaEvent {
  readonly handle: bigint;
}

/** The cuda DeviceBackend plus what the allocator, ds-report and @ds/comm-nccl need. */
export interface CudaDevice extends DeviceBackend {
  readonly index: number;
  memoryStats(): CudaMemoryStats;
  /** Returns every cached (free) block to the driver. */
  emptyCache(): void;
  /** The cudaStream_t of the compute or the communication stream, for NCCL calls. */
  streamHandle(stream: StreamName): bigint;
  createEvent(): CudaEvent;
  recordEvent(event: CudaEvent, stream: StreamName): void;
  /** Work queued on `stream` after this waits for the event (no host wait). */
  waitEvent(stream: StreamName, event: CudaEvent): void;
  synchronizeEvent(event: CudaEvent): void;
  queryEvent(event: CudaEvent): boolean;
  destroyEvent(event: CudaEvent): void;
}

export interface CudaDeviceOptions {
  /** The GPU this process drives (default 0); launchers usually pass LOCAL_RANK. */
  index?: number;
}

/** A device operand of this table: a cuda DeviceArray of dtype's kind with at least `count` elements; returns its address. */
function dev(op: string, name: string, a: KArray, dtype: AnyDType, count: number, sizes: string): bigint {
  if (!(a instanceof DeviceArray)) {
    const what = ArrayBuffer.isView(a) ? `host memory (${Object.prototype.toString.call(a).slice(8, -1)})` : String(a);
    throw new DSShapeError(`${op}: ${name} is ${what}, but the cuda kernel table runs on cuda memory; move the tensor with .to('cuda') first`);
  }
  if (a.device !== 'cuda') throw new DSShapeError(`${op}: ${name} lives on device '${a.device}', not 'cuda'; move it with .to('cuda') first`);
  const kind = KIND[dtype];
  if (kind === undefined) throw new DSShapeError(`${op}: unknown dtype '${dtype}' for ${name} (expected f32, bf16, f16, i32 or u8)`);
  if (a.kind !== kind) throw new DSShapeError(`${op}: ${name} holds ${a.kind} elements but dtype ${dtype} needs ${kind}`);
  if (a.length < count) throw new DSShapeError(`${op}: ${name} has ${a.length} elements but ${sizes} needs ${count}; pass a view of at least that length`);
  return a.address;
}

/** Runs an addon call, mapping its errors onto the DS error family. */
function call<T>(op: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError || err instanceof TypeError) throw new DSShapeError(`${op}: ${err.message}`, { cause: err });
    const kind = (err as { dsKind?: string }).dsKind;
    const msg = (err as Error).message;
    if (kind === 'oom') throw new DSOutOfMemoryError(`${msg}; free tensors, lower the batch size, or call emptyCache() on the cuda device`, { cause: err });
    if (kind === 'unsupported') throw new DSUnsupportedError(msg, { cause: err });
    throw new DSNativeError(`${msg}; a fault on the GPU leaves its context unusable, so restart the process after fixing the cause`, { cause: err });
  }
}

/**
 * Creates the cuda device (opening GPU `index`). Throws DSUnsupportedError with one sentence
 * saying what is missing (the binary, the driver, a GPU, cuBLASLt) and how to fix it.
 */
export function createCudaDevice(opts: CudaDeviceOptions = {}): CudaDevice {
  const l = loadCudaAddon();
  if (!l.addon || l.reason !== null) throw new DSUnsupportedError(`cuda is unavailable: ${l.reason ?? 'the cuda binary did not load.'}`);
  const index = opts.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= (l.probe?.deviceCount ?? 0)) {
    throw new DSUnsupportedError(`cuda device ${index} does not exist: this machine has ${l.probe?.deviceCount ?? 0} visible GPU(s); pass an index below that or check CUDA_VISIBLE_DEVICES.`);
  }
  const native = l.addon;
  const binary = l.binary;
  call('openDevice', () => native.openDevice(index, l.libDirs));
  const checkCopy = (op: string, d: DeviceArray, h: HostArray) => {
    if (!(d instanceof DeviceArray) || d.device !== 'cuda') throw new DSShapeError(`${op}: the device side must be a DeviceArray on 'cuda'`);
    if (!ArrayBuffer.isView(h)) throw new DSShapeError(`${op}: the host side must be a typed array`);
    if (h.BYTES_PER_ELEMENT !== d.BYTES_PER_ELEMENT) throw new DSShapeError(`${op}: element sizes differ (${d.kind} on cuda, ${h.BYTES_PER_ELEMENT}-byte host elements)`);
  };
  return {
    name: 'cuda',
    index,
    kernels: createCudaKernels(native),
    alloc(byteLength, o) {
      dim('alloc', 'byteLength', byteLength);
      const address = call('alloc', () => native.alloc(byteLength, !o?.uninitialized));
      return { device: 'cuda', byteLength, address } satisfies DeviceAllocation;
    },
    free(a) {
      if (a.device !== 'cuda') throw new DSShapeError(`free: the allocation belongs to '${a.device}', not 'cuda'`);
      call('free', () => native.free(a.address));
    },
    copyToHost(src, dst) {
      checkCopy('copyToHost', src, dst);
      if (src.length < dst.length) throw new DSShapeError(`copyToHost: src has ${src.length} elements but dst wants ${dst.length}`);
      call('copyToHost', () => native.copyToHost(src.address, dst, dst.byteLength));
    },
    copyFromHost(src, dst) {
      checkCopy('copyFromHost', dst, src);
      if (dst.length < src.length) throw new DSShapeError(`copyFromHost: dst has ${dst.length} elements but src has ${src.length}`);
      call('copyFromHost', () => native.copyFromHost(src, dst.address, src.byteLength));
    },
    copy(src, dst) {
      for (const [n, a] of [['src', src], ['dst', dst]] as const) {
        if (!(a instanceof DeviceArray) || a.device !== 'cuda') throw new DSShapeError(`copy: ${n} must be a DeviceArray on 'cuda'`);
      }
      if (dst.byteLength < src.byteLength) throw new DSShapeError(`copy: dst has ${dst.byteLength} bytes but src has ${src.byteLength}`);
      call('copy', () => native.copyDevice(src.address, dst.address, src.byteLength));
    },
    synchronize: () => call('synchronize', () => native.synchronize()),
    describe: () => `${call('describe', () => native.describe())}; binary ${binary}`,
    memoryStats: () => call('memoryStats', () => native.memoryStats()),
    emptyCache: () => call('emptyCache', () => native.emptyCache()),
    streamHandle: (s) => call('streamHandle', () => native.streamHandle(STREAM[s])),
    createEvent: () => ({ handle: call('eventCreate', () => native.eventCreate()) }),
    recordEvent: (e, s) => call('eventRecord', () => native.eventRecord(e.handle, STREAM[s])),
    waitEvent: (s, e) => call('streamWaitEvent', () => native.streamWaitEvent(STREAM[s], e.handle)),
    synchronizeEvent: (e) => call('eventSynchronize', () => native.eventSynchronize(e.handle)),
    queryEvent: (e) => call('eventQuery', () => native.eventQuery(e.handle)),
    destroyEvent: (e) => call('eventDestroy', () => native.eventDestroy(e.handle)),
  };
}

function gemmArgs(native: CudaAddon, g: GemmArgs): void {
  const op = 'gemm';
  if (g.dtype !== 'f32' && g.dtype !== 'bf16') throw new DSShapeError(`gemm: dtype must be f32 or bf16, got '${g.dtype}'`);
  if (g.outDtype !== 'f32' && g.outDtype !== 'bf16') throw new DSShapeError(`gemm: outDtype must be f32 or bf16, got '${g.outDtype}'`);
  for (const [name, v] of [['batch', g.batch], ['m', g.m], ['n', g.n], ['k', g.k], ['strideA', g.strideA], ['strideB', g.strideB], ['strideC', g.strideC]] as const) dim(op, name, v);
  finite(op, 'alpha', g.alpha);
  finite(op, 'beta', g.beta);
  const sizes = `batch=${g.batch} m=${g.m} n=${g.n} k=${g.k}`;
  const need = (stride: number, elems: number) => (g.batch === 0 || elems === 0 ? 0 : (g.batch - 1) * stride + elems);
  const a = dev(op, 'a', g.a, g.dtype, need(g.strideA, g.m * g.k), `${sizes} strideA=${g.strideA}`);
  const b = dev(op, 'b', g.b, g.dtype, need(g.strideB, g.k * g.n), `${sizes} strideB=${g.strideB}`);
  const c = dev(op, 'c', g.c, g.outDtype, need(g.strideC, g.m * g.n), `${sizes} strideC=${g.strideC}`);
  if (g.batch > 1 && g.strideC < g.m * g.n) throw new DSShapeError(`gemm: strideC=${g.strideC} is below m*n=${g.m * g.n}, so outputs of the batch would overlap`);
  call(op, () => native.gemm(DTYPE_CODE[g.dtype], DTYPE_CODE[g.outDtype], !!g.transA, !!g.transB, g.batch, g.m, g.n, g.k, g.alpha, g.beta, a, g.strideA, b, g.strideB, c, g.strideC));
}

function adamwArgs(native: CudaAddon, a: AdamWArgs): void {
  const op = 'adamw';
  dim(op, 'n', a.n);
  const s = `n=${a.n}`;
  const param = dev(op, 'param', a.param, 'f32', a.n, s);
  const grad = dev(op, 'grad', a.grad, a.gradDtype, a.n, s);
  floatCode(op, a.gradDtype);
  const m = dev(op, 'expAvg', a.expAvg, 'f32', a.n, s);
  const v = dev(op, 'expAvgSq', a.expAvgSq, 'f32', a.n, s);
  for (const [name, x] of [['lr', a.lr], ['beta1', a.beta1], ['beta2', a.beta2], ['eps', a.eps], ['weightDecay', a.weightDecay], ['gradScale', a.gradScale]] as const) finite(op, name, x);
  if (a.biasCorrection && !(a.step >= 1)) throw new DSShapeError(`adamw: step must be >= 1 with bias correction, got ${a.step}`);
  let out16: bigint | null = null;
  const d16 = a.out16Dtype ?? 'bf16';
  if (a.out16) {
    if (d16 !== 'bf16' && d16 !== 'f16') throw new DSShapeError(`adamw: out16Dtype must be bf16 or f16, got '${d16}'`);
    out16 = dev(op, 'out16', a.out16, d16, a.n, s);
  }
  call(op, () => native.adamw(param, grad, DTYPE_CODE[a.gradDtype], m, v, a.n, a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, a.step,
    a.biasCorrection, a.decoupled, a.gradScale, out16, DTYPE_CODE[d16]));
}

/** The cuda KernelTable over an opened addon. */
export function createCudaKernels(native: CudaAddon): KernelTable {
  const rc = (op: string, rows: number, cols: number, colName = 'cols') => {
    dim(op, 'rows', rows);
    dim(op, colName, cols);
    return `[rows=${rows}, ${colName}=${cols}]`;
  };
  return {
    name: 'cuda',
    // Kernels run on the GPU; the host thread count means nothing here. Checked, then ignored.
    setNumThreads(n) {
      if (!Number.isInteger(n) || n < 1 || n > 1024) throw new DSShapeError(`setNumThreads: thread count must be an integer in [1, 1024], got ${n}`);
    },
    getNumThreads: () => 1,

    cast(srcDtype, src, dstDtype, dst, n) {
      const op = 'cast';
      dim(op, 'n', n);
      const s = dev(op, 'src', src, srcDtype, n, `n=${n}`);
      const d = dev(op, 'dst', dst, dstDtype, n, `n=${n}`);
      call(op, () => native.cast(code(op, srcDtype), s, code(op, dstDtype), d, n));
    },
    copy(src, dst, n) {
      const op = 'copy';
      dim(op, 'n', n);
      if (!(src instanceof DeviceArray)) throw new DSShapeError(`copy: src must be a DeviceArray on 'cuda'`);
      const dtype = (Object.keys(KIND) as AnyDType[]).find((k) => KIND[k] === src.kind)!;
      const s = dev(op, 'src', src, dtype, n, `n=${n}`);
      const d = dev(op, 'dst', dst, dtype, n, `n=${n} (dst must have src's element type)`);
      call(op, () => native.copy(code(op, dtype), s, d, n));
    },
    fill(dtype, x, n, value) {
      dim('fill', 'n', n);
      if (typeof value !== 'number') throw new DSShapeError(`fill: value must be a number`);
      const a = dev('fill', 'x', x, dtype, n, `n=${n}`);
      call('fill', () => native.fill(code('fill', dtype), a, n, value));
    },
    gather(dtype, src, offset, shape, strides, dst) {
      const op = 'gather';
      const { total, srcNeeded, sizes } = gatherSpan(offset, shape, strides);
      const s = dev(op, 'src', src, dtype, srcNeeded, sizes);
      const d = dev(op, 'dst', dst, dtype, total, sizes);
      call(op, () => native.gather(code(op, dtype), s, offset, Float64Array.from(shape), Float64Array.from(strides), d));
    },

    unary(uop, dtype, x, out, n) {
      const op = `unary(${uop})`;
      const u = UNARY_CODE[uop];
      if (u === undefined) throw new DSShapeError(`unary: unknown op '${uop}' (expected ${Object.keys(UNARY_CODE).join(', ')})`);
      dim(op, 'n', n);
      const f = floatCode(op, dtype);
      const a = dev(op, 'x', x, dtype, n, `n=${n}`);
      const o = dev(op, 'out', out, dtype, n, `n=${n}`);
      call(op, () => native.unary(u, f, a, o, n));
    },
    binary(bop, dtype, a, b, out, n, bn) {
      const op = `binary(${bop})`;
      const o = BINARY_CODE[bop];
      if (o === undefined) throw new DSShapeError(`binary: unknown op '${bop}' (expected ${Object.keys(BINARY_CODE).join(', ')})`);
      dim(op, 'n', n);
      dim(op, 'bn', bn);
      if (n > 0 && (bn === 0 || n % bn !== 0)) throw new DSShapeError(`${op}: n=${n} must be a multiple of bn=${bn} (b repeats every bn elements)`);
      const f = floatCode(op, dtype);
      const pa = dev(op, 'a', a, dtype, n, `n=${n}`);
      const pb = dev(op, 'b', b, dtype, n > 0 ? bn : 0, `bn=${bn}`);
      const po = dev(op, 'out', out, dtype, n, `n=${n}`);
      call(op, () => native.binary(o, f, pa, pb, po, n, bn));
    },
    scale(dtype, x, out, n, alpha, beta) {
      dim('scale', 'n', n);
      const f = floatCode('scale', dtype);
      const px = dev('scale', 'x', x, dtype, n, `n=${n}`);
      const po = dev('scale', 'out', out, dtype, n, `n=${n}`);
      call('scale', () => native.scale(f, px, po, n, alpha, beta));
    },
    axpy(xDtype, x, yDtype, y, n, alpha) {
      const op = 'axpy';
      dim(op, 'n', n);
      if (yDtype !== 'f32' && yDtype !== xDtype) throw new DSShapeError(`axpy: y must be f32 or x's dtype (${xDtype}), got ${yDtype}`);
      const fx = floatCode(op, xDtype);
      const fy = floatCode(op, yDtype);
      const px = dev(op, 'x', x, xDtype, n, `n=${n}`);
      const py = dev(op, 'y', y, yDtype, n, `n=${n}`);
      call(op, () => native.axpy(fx, px, fy, py, n, alpha));
    },

    sum(dtype, x, n) {
      dim('sum', 'n', n);
      const f = floatCode('sum', dtype);
      const p = dev('sum', 'x', x, dtype, n, `n=${n}`);
      return call('sum', () => native.sum(f, p, n));
    },
    sumSquares(dtype, x, n) {
      dim('sumSquares', 'n', n);
      const f = floatCode('sumSquares', dtype);
      const p = dev('sumSquares', 'x', x, dtype, n, `n=${n}`);
      return call('sumSquares', () => native.sumSquares(f, p, n));
    },
    hasInfNan(dtype, x, n) {
      dim('hasInfNan', 'n', n);
      const f = floatCode('hasInfNan', dtype);
      const p = dev('hasInfNan', 'x', x, dtype, n, `n=${n}`);
      return call('hasInfNan', () => native.hasInfNan(f, p, n));
    },
    sumRows(dtype, x, rows, cols, out, accumulate) {
      const op = 'sumRows';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const px = dev(op, 'x', x, dtype, rows * cols, s);
      const po = dev(op, 'out', out, 'f32', cols, `cols=${cols}`);
      call(op, () => native.sumRows(f, px, rows, cols, po, !!accumulate));
    },
    sumLastDim(dtype, x, rows, cols, out) {
      const op = 'sumLastDim';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const px = dev(op, 'x', x, dtype, rows * cols, s);
      const po = dev(op, 'out', out, dtype, rows, `rows=${rows}`);
      call(op, () => native.sumLastDim(f, px, rows, cols, po));
    },

    gemm: (g) => gemmArgs(native, g),
    ...nnKernels(native, rc),
    adamw: (a) => adamwArgs(native, a),
  };
}

type NnKernels = Pick<KernelTable,
  | 'layerNormForward' | 'layerNormBackward' | 'layerNormResidualForward' | 'geluForward' | 'geluBackward' | 'softmaxForward' | 'softmaxBackward'
  | 'embeddingForward' | 'embeddingBackward' | 'crossEntropyForward' | 'crossEntropyBackward'
  | 'attentionForward' | 'attentionBackward' | 'dropoutForward'>;

function nnKernels(native: CudaAddon, rc: (op: string, rows: number, cols: number, colName?: string) => string): NnKernels {
  // Addresses of several operands of one dtype and count.
  const each = (op: string, dtype: AnyDType, n: number, sizes: string, named: Record<string, KArray>) =>
    Object.entries(named).map(([name, a]) => dev(op, name, a, dtype, n, sizes));
  return {
    layerNormForward(dtype, x, weight, bias, y, mean, rstd, rows, cols, eps) {
      const op = 'layerNormForward';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const [px, py] = each(op, dtype, rows * cols, s, { x, y });
      const [pw, pb] = each(op, dtype, cols, s, { weight, bias });
      const [pm, pr] = each(op, 'f32', rows, s, { mean, rstd });
      finite(op, 'eps', eps);
      call(op, () => native.layerNormForward(f, px!, pw!, pb!, py!, pm!, pr!, rows, cols, eps));
    },
    layerNormBackward(dtype, dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols) {
      const op = 'layerNormBackward';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const [pdy, px, pdx] = each(op, dtype, rows * cols, s, { dy, x, dx });
      const pw = dev(op, 'weight', weight, dtype, cols, s);
      const [pm, pr] = each(op, 'f32', rows, s, { mean, rstd });
      const [pdw, pdb] = each(op, 'f32', cols, s, { dweight, dbias });
      call(op, () => native.layerNormBackward(f, pdy!, px!, pw, pm!, pr!, pdx!, pdw!, pdb!, rows, cols));
    },
    layerNormResidualForward(dtype, x, r, weight, bias, sum, y, mean, rstd, rows, cols, eps) {
      const op = 'layerNormResidualForward';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const [px, pr, ps, py] = each(op, dtype, rows * cols, s, { x, r, sum, y });
      const [pw, pb] = each(op, dtype, cols, s, { weight, bias });
      const [pm, prs] = each(op, 'f32', rows, s, { mean, rstd });
      finite(op, 'eps', eps);
      call(op, () => native.layerNormResidualForward(f, px!, pr!, pw!, pb!, ps!, py!, pm!, prs!, rows, cols, eps));
    },
    geluForward(dtype, x, y, n) {
      dim('geluForward', 'n', n);
      const f = floatCode('geluForward', dtype);
      const [px, py] = each('geluForward', dtype, n, `n=${n}`, { x, y });
      call('geluForward', () => native.geluForward(f, px!, py!, n));
    },
    geluBackward(dtype, dy, x, dx, n) {
      dim('geluBackward', 'n', n);
      const f = floatCode('geluBackward', dtype);
      const [pdy, px, pdx] = each('geluBackward', dtype, n, `n=${n}`, { dy, x, dx });
      call('geluBackward', () => native.geluBackward(f, pdy!, px!, pdx!, n));
    },
    softmaxForward(dtype, x, y, rows, cols) {
      const op = 'softmaxForward';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const [px, py] = each(op, dtype, rows * cols, s, { x, y });
      call(op, () => native.softmaxForward(f, px!, py!, rows, cols));
    },
    softmaxBackward(dtype, dy, y, dx, rows, cols) {
      const op = 'softmaxBackward';
      const s = rc(op, rows, cols);
      const f = floatCode(op, dtype);
      const [pdy, py, pdx] = each(op, dtype, rows * cols, s, { dy, y, dx });
      call(op, () => native.softmaxBackward(f, pdy!, py!, pdx!, rows, cols));
    },
    embeddingForward(dtype, ids, table, out, n, vocab, dim_) {
      const op = 'embeddingForward';
      for (const [name, v] of [['n', n], ['vocab', vocab], ['dim', dim_]] as const) dim(op, name, v);
      const s = `n=${n} vocab=${vocab} dim=${dim_}`;
      const f = floatCode(op, dtype);
      const pi = dev(op, 'ids', ids, 'i32', n, s);
      const pt = dev(op, 'table', table, dtype, vocab * dim_, s);
      const po = dev(op, 'out', out, dtype, n * dim_, s);
      call(op, () => native.embeddingForward(f, pi, pt, po, n, vocab, dim_));
    },
    embeddingBackward(dtype, dout, ids, dtable, n, vocab, dim_) {
      const op = 'embeddingBackward';
      for (const [name, v] of [['n', n], ['vocab', vocab], ['dim', dim_]] as const) dim(op, name, v);
      const s = `n=${n} vocab=${vocab} dim=${dim_}`;
      const f = floatCode(op, dtype);
      const pd = dev(op, 'dout', dout, dtype, n * dim_, s);
      const pi = dev(op, 'ids', ids, 'i32', n, s);
      const pt = dev(op, 'dtable', dtable, 'f32', vocab * dim_, s);
      call(op, () => native.embeddingBackward(f, pd, pi, pt, n, vocab, dim_));
    },
    crossEntropyForward(dtype, logits, targets, losses, lse, rows, vocab) {
      const op = 'crossEntropyForward';
      const s = rc(op, rows, vocab, 'vocab');
      const f = floatCode(op, dtype);
      const pl = dev(op, 'logits', logits, dtype, rows * vocab, s);
      const pt = dev(op, 'targets', targets, 'i32', rows, s);
      const [plo, pls] = each(op, 'f32', rows, s, { losses, lse });
      call(op, () => native.crossEntropyForward(f, pl, pt, plo!, pls!, rows, vocab));
    },
    crossEntropyBackward(dtype, logits, targets, lse, dloss, dlogits, rows, vocab) {
      const op = 'crossEntropyBackward';
      const s = rc(op, rows, vocab, 'vocab');
      const f = floatCode(op, dtype);
      const [pl, pg] = each(op, dtype, rows * vocab, s, { logits, dlogits });
      const pt = dev(op, 'targets', targets, 'i32', rows, s);
      const [pls, pd] = each(op, 'f32', rows, s, { lse, dloss });
      call(op, () => native.crossEntropyBackward(f, pl!, pt, pls!, pd!, pg!, rows, vocab));
    },
    attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale) {
      const op = 'attentionForward';
      for (const [name, x] of [['bh', bh], ['t', t], ['d', d]] as const) dim(op, name, x);
      const s = `[bh=${bh}, t=${t}, d=${d}]`;
      const f = floatCode(op, dtype);
      const [pq, pk, pv, po] = each(op, dtype, bh * t * d, s, { q, k, v, out });
      const pl = dev(op, 'lse', lse, 'f32', bh * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionForward(f, pq!, pk!, pv!, po!, pl, bh, t, d, scale));
    },
    attentionBackward(dtype, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale) {
      const op = 'attentionBackward';
      for (const [name, x] of [['bh', bh], ['t', t], ['d', d]] as const) dim(op, name, x);
      const s = `[bh=${bh}, t=${t}, d=${d}]`;
      const f = floatCode(op, dtype);
      const [pdo, pq, pk, pv, po, pdq, pdk, pdv] = each(op, dtype, bh * t * d, s, { dout, q, k, v, out, dq, dk, dv });
      const pl = dev(op, 'lse', lse, 'f32', bh * t, s);
      finite(op, 'scale', scale);
      call(op, () => native.attentionBackward(f, pdo!, pq!, pk!, pv!, po!, pl, pdq!, pdk!, pdv!, bh, t, d, scale));
    },
    dropoutForward(dtype, x, out, mask, n, p, seed, offset) {
      const op = 'dropoutForward';
      dim(op, 'n', n);
      dim(op, 'seed', seed);
      dim(op, 'offset', offset);
      if (!(p >= 0 && p <= 1)) throw new DSShapeError(`dropoutForward: p must be in [0, 1], got ${p}`);
      const f = floatCode(op, dtype);
      const [px, po] = each(op, dtype, n, `n=${n}`, { x, out });
      const pm = dev(op, 'mask', mask, 'u8', n, `n=${n}`);
      call(op, () => native.dropoutForward(f, px!, po!, pm, n, p, seed, offset));
    },
  };
}
