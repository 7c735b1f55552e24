// The 1-bit compressed all-reduce with error feedback on both sides (DeepSpeed:
// runtime/comm/nccl.py and mpi.py, `compressed_allreduce(buffer_m, worker_error, server_error)`).
//
//   worker   x = m + e_w (padded with zeros); s_w = ||x||_2 / sqrt(padded) (the RMS);
//            e_w = x - s_w * sign(x); the signs are packed 8 to a byte and cut in `world` chunks.
//   phase 1  all-to-all of the sign chunks: rank j receives chunk j of every rank (rank j is the
//            "server" of chunk j); all-gather of the worker scales.
//   server   y = sum_i (s_i / world) * sign_i(chunk j) + e_s; s_s = RMS(y); e_s = y - s_s * sign(y).
//   phase 2  all-gather of the server sign chunks and server scales; every rank rebuilds the average
//            as the concatenation of s_s(j) * sign_j, and drops the padding.
//
// sign(0) is +1 (a bit is 1 unless x < 0), as DeepSpeed's sign().add_(1).bool() gives. The padding
// rule makes every server chunk a whole number of bytes and a multiple of the world size: a tensor
// of n elements is padded to a multiple of world * lcm(8, world). Ops are waited for synchronously
// (Work.waitSync), because the optimizer step that calls this cannot await.
//
// Differences from DeepSpeed: one call may carry the whole flat momentum (DeepSpeed calls it per
// parameter tensor; the result per element is the same function of that element's chunk, but the
// scales are per call, so a call over a flat buffer shares its scales across tensors, as its
// 1-bit LAMB does for its fused momentum). bf16 and f16 inputs are widened to f32 for the
// arithmetic and rounded once on the way back; the error buffers are always f32.
import { bf16ToF32, DSShapeError, f16ToF32, f32ToBf16, f32ToF16 } from '@ds/tensor';
import { waitSync, type ProcessGroup } from '@ds/core';

import type { OnebitKernels } from './native/load.js';

export type CompressibleDtype = 'f32' | 'bf16' | 'f16';

/** A buffer the all-reduce averages in place: f32 values, or bf16/f16 bits in a Uint16Array. */
export interface CompressibleBuffer {
  dtype: CompressibleDtype;
  array: Float32Array | Uint16Array;
}

/** The error-feedback state of one compressed tensor on one rank. */
export interface CompressionErrors {
  /** Worker error, one per padded element. */
  worker: Float32Array;
  /** Server error of this rank's chunk (padded / world elements). */
  server: Float32Array;
}

/** What one call did, for tests and the wire-volume account. */
export interface CompressedStats {
  /** This rank's worker scale and server scale (its chunk's). */
  workerScale: number;
  serverScale: number;
  /** Every rank's worker scale and every chunk's server scale (gathered). */
  workerScales: Float32Array;
  serverScales: Float32Array;
  padded: number;
  /** With `trace`: this rank's packed worker signs and its chunk's packed server signs. */
  workerBits?: Uint8Array;
  serverBits?: Uint8Array;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** DeepSpeed's padding: n rounded up to a multiple of world * lcm(8, world) (world 4 -> 32, 8 -> 64, 16 -> 256). */
export function paddedSize(n: number, world: number): number {
  const divider = (8 * world) / gcd(8, world);
  const unit = world * divider;
  return Math.ceil(n / unit) * unit || unit;
}

/** Zeroed error buffers for a tensor of n elements on a group of `world` ranks. */
export function createErrors(n: number, world: number): CompressionErrors {
  const padded = paddedSize(n, world);
  return { worker: new Float32Array(padded), server: new Float32Array(padded / world) };
}

/** Reusable buffers of one padded size. */
interface Scratch {
  x: Float32Array;
  bits: Uint8Array;
  recvBits: Uint8Array;
  scale: Float32Array;
  scales: Float32Array;
  server: Float32Array;
  serverBits: Uint8Array;
  gatheredBits: Uint8Array;
  serverScale: Float32Array;
  serverScales: Float32Array;
}

export interface CompressedAllReduceOptions {
  /** Per-op timeout (default: the group's). */
  timeoutMs?: number;
}

/**
 * Compressed all-reduce over a process group. Holds scratch buffers per padded size; the error
 * buffers belong to the caller (one pair per tensor), so that they can be checkpointed.
 */
export class CompressedAllReduce {
  private readonly scratch = new Map<number, Scratch>();

  constructor(
    readonly group: ProcessGroup,
    private readonly signs: OnebitKernels,
    private readonly options: CompressedAllReduceOptions = {},
  ) {}

  private scratchFor(padded: number): Scratch {
    let s = this.scratch.get(padded);
    if (!s) {
      const world = this.group.size;
      const chunk = padded / world;
      s = {
        x: new Float32Array(padded),
        bits: new Uint8Array(padded / 8),
        recvBits: new Uint8Array(padded / 8),
        scale: new Float32Array(1),
        scales: new Float32Array(world),
        server: new Float32Array(chunk),
        serverBits: new Uint8Array(chunk / 8),
        gatheredBits: new Uint8Array(padded / 8),
        serverScale: new Float32Array(1),
        serverScales: new Float32Array(world),
      };
      this.scratch.set(padded, s);
    }
    return s;
  }

  private wait(works: ReturnType<ProcessGroup['allGather']>[], what: string): void {
    for (const w of works) waitSync(w, this.group, `compressed all-reduce (${what})`);
  }

  /** Averages `buf` over the group in place (1-bit, with error feedback); collective. */
  run(buf: CompressibleBuffer, errors: CompressionErrors, trace = false): CompressedStats {
    const world = this.group.size;
    const n = buf.array.length;
    const padded = paddedSize(n, world);
    if (errors.worker.length !== padded || errors.server.length !== padded / world) {
      throw new DSShapeError(
        `compressed all-reduce: ${n} elements on ${world} ranks need a worker error of ${padded} and a server error of ${padded / world} elements, got ${errors.worker.length} and ${errors.server.length}; make them with createErrors(${n}, ${world})`,
      );
    }
    const s = this.scratchFor(padded);
    const chunk = padded / world;
    const opts = this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {};
    readInto(buf, s.x);
    s.x.fill(0, n);
    // Worker side: error feedback, RMS scale, signs.
    const workerScale = Math.fround(Math.sqrt(this.signs.addErrorSumSquares(s.x, errors.worker) / padded));
    this.signs.compressSigns(s.x, workerScale, s.bits, errors.worker);
    s.scale[0] = workerScale;
    this.wait(
      [
        this.group.allToAll({ dtype: 'u8', array: s.recvBits }, { dtype: 'u8', array: s.bits }, opts),
        this.group.allGather({ dtype: 'f32', array: s.scales }, { dtype: 'f32', array: s.scale }, opts),
      ],
      'phase 1: sign all-to-all and scale all-gather',
    );
    // Server side: average this rank's chunk from every worker's signs, then compress it again.
    const rowBytes = chunk / 8;
    s.server.fill(0);
    for (let i = 0; i < world; i++) {
      this.signs.unpackSigns(s.recvBits.subarray(i * rowBytes, (i + 1) * rowBytes), Math.fround(s.scales[i]! / world), s.server, true);
    }
    const serverScale = Math.fround(Math.sqrt(this.signs.addErrorSumSquares(s.server, errors.server) / chunk));
    this.signs.compressSigns(s.server, serverScale, s.serverBits, errors.server);
    s.serverScale[0] = serverScale;
    this.wait(
      [
        this.group.allGather({ dtype: 'u8', array: s.gatheredBits }, { dtype: 'u8', array: s.serverBits }, opts),
        this.group.allGather({ dtype: 'f32', array: s.serverScales }, { dtype: 'f32', array: s.serverScale }, opts),
      ],
      'phase 2: server sign and scale all-gather',
    );
    for (let j = 0; j < world; j++) {
      this.signs.unpackSigns(s.gatheredBits.subarray(j * rowBytes, (j + 1) * rowBytes), s.serverScales[j]!, s.x.subarray(j * chunk, (j + 1) * chunk), false);
    }
    writeFrom(s.x, buf);
    const stats: CompressedStats = { workerScale, serverScale, workerScales: s.scales.slice(), serverScales: s.serverScales.slice(), padded };
    if (trace) Object.assign(stats, { workerBits: s.bits.slice(), serverBits: s.serverBits.slice() });
    return stats;
  }
}

function readInto(buf: CompressibleBuffer, x: Float32Array): void {
  const a = buf.array;
  if (buf.dtype === 'f32') x.set(a as Float32Array);
  else {
    const widen = buf.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
    for (let i = 0; i < a.length; i++) x[i] = widen(a[i]!);
  }
}

function writeFrom(x: Float32Array, buf: CompressibleBuffer): void {
  const a = buf.array;
  if (buf.dtype === 'f32') (a as Float32Array).set(x.subarray(0, a.length));
  else {
    const narrow = buf.dtype === 'bf16' ? f32ToBf16 : f32ToF16;
    for (let i = 0; i < a.length; i++) a[i] = narrow(x[i]!);
  }
}
