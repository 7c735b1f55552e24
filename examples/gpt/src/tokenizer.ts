// Byte-level tokenizer: token = UTF-8 byte, vocabulary 256. No training, no unknown tokens, and
// decoding any sampled sequence is well defined (invalid UTF-8 becomes U+FFFD).

export const BYTE_VOCAB = 256;

export function encode(text: string): Int32Array {
  return Int32Array.from(Buffer.from(text, 'utf8'));
}

export function decode(ids: ArrayLike<number>): string {
  return Buffer.from(Uint8Array.from(ids as ArrayLike<number>)).toString('utf8');
}
