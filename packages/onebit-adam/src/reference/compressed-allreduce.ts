// The float64 reference of the compressed all-reduce (src/compressed-allreduce.ts): every rank's
// worker step, the server step of every chunk and the rebuild, computed in one process from all
// ranks' inputs, in doubles. Tests run the real collective on 2, 3 and 4 processes and compare each
// rank's result, signs, scales and both error buffers with this.
import { paddedSize } from '../compressed-allreduce.js';

export interface ReferenceRankState {
  worker: Float64Array;
  server: Float64Array;
}

export interface ReferenceResult {
  /** The averaged tensor (unpadded), the same on every rank. */
  output: Float64Array;
  workerScales: number[];
  serverScales: number[];
  /** Sign bits (1 = not negative) of each rank's corrected x, padded. */
  workerSigns: Uint8Array[];
  /** Sign bits of each server chunk. */
  serverSigns: Uint8Array[];
}

/** One all-reduce step: updates `states` (the error buffers of every rank) in place. */
export function referenceCompressedAllReduce(inputs: readonly ArrayLike<number>[], states: ReferenceRankState[]): ReferenceResult {
  const world = inputs.length;
  const n = inputs[0]!.length;
  const padded = paddedSize(n, world);
  const chunk = padded / world;
  const workerScales: number[] = [];
  const workerSigns: Uint8Array[] = [];
  for (let r = 0; r < world; r++) {
    const x = new Float64Array(padded);
    let ss = 0;
    for (let i = 0; i < padded; i++) {
      x[i] = (i < n ? inputs[r]![i]! : 0) + states[r]!.worker[i]!;
      ss += x[i]! * x[i]!;
    }
    const scale = Math.sqrt(ss / padded);
    const signs = new Uint8Array(padded);
    for (let i = 0; i < padded; i++) {
      signs[i] = x[i]! < 0 ? 0 : 1;
      states[r]!.worker[i] = x[i]! - (signs[i] ? scale : -scale);
    }
    workerScales.push(scale);
    workerSigns.push(signs);
  }
  const serverScales: number[] = [];
  const serverSigns: Uint8Array[] = [];
  const full = new Float64Array(padded);
  for (let j = 0; j < world; j++) {
    const y = new Float64Array(chunk);
    let ss = 0;
    for (let k = 0; k < chunk; k++) {
      let v = 0;
      for (let r = 0; r < world; r++) v += (workerSigns[r]![j * chunk + k] ? 1 : -1) * (workerScales[r]! / world);
      y[k] = v + states[j]!.server[k]!;
      ss += y[k]! * y[k]!;
    }
    const scale = Math.sqrt(ss / chunk);
    const signs = new Uint8Array(chunk);
    for (let k = 0; k < chunk; k++) {
      signs[k] = y[k]! < 0 ? 0 : 1;
      states[j]!.server[k] = y[k]! - (signs[k] ? scale : -scale);
      full[j * chunk + k] = signs[k] ? scale : -scale;
    }
    serverScales.push(scale);
    serverSigns.push(signs);
  }
  return { output: full.slice(0, n), workerScales, serverScales, workerSigns, serverSigns };
}

/** Zeroed reference error buffers for `world` ranks and n elements. */
export function referenceStates(n: number, world: number): ReferenceRankState[] {
  const padded = paddedSize(n, world);
  return Array.from({ length: world }, () => ({ worker: new Float64Array(padded), server: new Float64Array(padded / world) }));
}
