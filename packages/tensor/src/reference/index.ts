// The reference kernel table: plain TypeScript loops that define what every backend must compute.
// Native backends are tested against it on random inputs; gradient checks run on it in f64.

import type { KernelTable } from '../kernels/table.js';
import { adamw } from './adamw.js';
import { attentionBackward, attentionForward } from './attention.js';
import { cast, copy, fill, gather } from './data.js';
import { axpy, binary, hasInfNan, scale, sum, sumLastDim, sumRows, sumSquares, unary } from './elementwise.js';
import { gemm } from './gemm.js';
import {
  crossEntropyBackward, crossEntropyForward, dropoutForward, embeddingBackward, embeddingForward,
  geluBackward, geluForward, layerNormBackward, layerNormForward, layerNormResidualForward, softmaxBackward, softmaxForward,
} from './nn.js';

export { dropoutUniform } from './nn.js';

/** A fresh reference table. It is single-threaded; the thread count is only remembered. */
export function createReferenceKernels(): KernelTable {
  let threads = 1;
  return {
    name: 'reference',
    setNumThreads(n: number) {
      threads = Math.max(1, Math.floor(n));
    },
    getNumThreads: () => threads,
    cast, copy, fill, gather,
    unary, binary, scale, axpy,
    sum, sumSquares, hasInfNan, sumRows, sumLastDim,
    gemm,
    layerNormForward, layerNormBackward, layerNormResidualForward,
    geluForward, geluBackward,
    softmaxForward, softmaxBackward,
    embeddingForward, embeddingBackward,
    crossEntropyForward, crossEntropyBackward,
    attentionForward, attentionBackward,
    dropoutForward,
    adamw,
  };
}
