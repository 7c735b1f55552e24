// Byte-level tokenizer: token = UTF-8 byte, vocabulary 256. No training, no unknown tokens, and
// decoding any sampled sequence is well defined (invalid UTF-8 becomes U+FFFD).

export const BYTE_VOCAB = 256;

export function encode(text: string): Int32Array {
  return Int32Array.from(Buffer.from(text, 'utf8'));
}

export function decode(ids: ArrayLike<number>): string {
  return Buffer.from(Uint8Array.from(ids as ArrayLike<number>)).toString('utf8');
}

/** Entropy of the unigram (token frequency) distribution of `ids` in nats: the loss of a model
 *  that knows only how often each token occurs. A trained model must end clearly below it. */
export function unigramEntropy(ids: ArrayLike<number>, vocab = BYTE_VOCAB): number {
  const counts = new Float64Array(vocab);
  for (let i = 0; i < ids.length; i++) counts[ids[i]!]! += 1;
  let h = 0;
  for (const c of counts) {
    if (c > 0) {
      const p = c / ids.length;
      h -= p * Math.log(p);
    }
  }
  return h;
}
