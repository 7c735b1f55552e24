// Simple baselines for the validation bits per byte, measured on the same split as the model, so
// the model's number means something: a model that has learnt English must beat all three.
import { constants, gzipSync } from 'node:zlib';

import { BYTE_VOCAB } from './tokenizer.js';

/** Nats per token to bits per byte (tokens are bytes here). */
export function bitsPerByte(natsPerToken: number): number {
  return natsPerToken / Math.LN2;
}

/** Byte frequencies of the training bytes with add-one (Laplace) smoothing over all 256 values,
 *  so a byte never seen in training still has a probability. */
export function unigramProbs(train: ArrayLike<number>, vocab = BYTE_VOCAB): Float64Array {
  const p = new Float64Array(vocab).fill(1);
  for (let i = 0; i < train.length; i++) p[train[i]!]! += 1;
  const total = train.length + vocab;
  for (let i = 0; i < vocab; i++) p[i]! /= total;
  return p;
}

/** Cross-entropy of `val` under the training unigram model (add-one smoothed), in bits per byte. */
export function unigramBitsPerByte(train: ArrayLike<number>, val: ArrayLike<number>, vocab = BYTE_VOCAB): number {
  if (val.length === 0) throw new RangeError('unigramBitsPerByte: empty validation text');
  const p = unigramProbs(train, vocab);
  let bits = 0;
  for (let i = 0; i < val.length; i++) bits -= Math.log2(p[val[i]!]!);
  return bits / val.length;
}

/**
 * Cross-entropy of `val` under a byte bigram model of the training bytes, in bits per byte.
 * Smoothing: Witten-Bell interpolation with the add-one unigram,
 *   p(b | a) = (c(a, b) + T(a) * p(b)) / (c(a) + T(a)),
 * where c(a) counts `a` as a context, c(a, b) the pair, and T(a) the distinct bytes seen after `a`
 * (the more varied a context's followers, the more weight the unigram gets). A context never seen
 * in training falls back to the unigram. The first validation byte is scored by the unigram.
 */
export function bigramBitsPerByte(train: ArrayLike<number>, val: ArrayLike<number>, vocab = BYTE_VOCAB): number {
  if (val.length === 0) throw new RangeError('bigramBitsPerByte: empty validation text');
  const uni = unigramProbs(train, vocab);
  const pair = new Float64Array(vocab * vocab);
  const ctx = new Float64Array(vocab);
  const types = new Float64Array(vocab);
  for (let i = 1; i < train.length; i++) {
    const a = train[i - 1]!;
    const k = a * vocab + train[i]!;
    if (pair[k] === 0) types[a]! += 1;
    pair[k]! += 1;
    ctx[a]! += 1;
  }
  let bits = -Math.log2(uni[val[0]!]!);
  for (let i = 1; i < val.length; i++) {
    const a = val[i - 1]!;
    const b = val[i]!;
    const p = ctx[a] === 0 ? uni[b]! : (pair[a * vocab + b]! + types[a]! * uni[b]!) / (ctx[a]! + types[a]!);
    bits -= Math.log2(p);
  }
  return bits / val.length;
}

/** gzip's compressed size of the validation text (level 9, header included) in bits per byte: a
 *  general-purpose compressor that adapts as it reads, with no training data. */
export function gzipBitsPerByte(val: Uint8Array): number {
  if (val.length === 0) throw new RangeError('gzipBitsPerByte: empty validation text');
  return (8 * gzipSync(val, { level: constants.Z_BEST_COMPRESSION }).length) / val.length;
}

export interface Baselines {
  unigram: number;
  bigram: number;
  gzip: number;
}

/** All three baselines on the validation bytes, trained (where they train) on the training bytes. */
export function baselines(train: Uint8Array, val: Uint8Array): Baselines {
  return { unigram: unigramBitsPerByte(train, val), bigram: bigramBitsPerByte(train, val), gzip: gzipBitsPerByte(val) };
}
