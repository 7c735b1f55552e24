// DeepSpeed's SparseAttentionUtils.pad_to_block_size / unpad_sequence_output: block-sparse attention
// needs a sequence length that is a multiple of the block, so a batch is padded at the end before the
// model and the padding cut off its output. Padded tokens are masked out as keys through the
// returned attention mask (0 at the padding), which the caller hands on as the key padding mask.
import { cat, DSShapeError, fromArray, narrow, type Tensor } from '@ds/tensor';

export interface PadInputs {
  /** [B, T] i32 token ids, padded with padTokenId. */
  inputIds?: Tensor;
  /** [B, T] 1 = token, 0 = padding; padded with 0. */
  attentionMask?: Tensor;
  /** [B, T] segment ids, padded with 0. */
  tokenTypeIds?: Tensor;
  /** [B, T] positions, padded with padTokenId (as DeepSpeed does). */
  positionIds?: Tensor;
  /** [B, T, C] embeddings, padded with the embeddings of padTokenId given by `embed`. */
  inputsEmbeds?: Tensor;
}

export interface PadOptions {
  padTokenId?: number;
  /** Turns [B, P] pad ids into [B, P, C] embeddings; needed with inputsEmbeds. */
  embed?: (ids: Tensor) => Tensor;
}

export interface Padded extends PadInputs {
  /** Tokens added at the end of every sequence. */
  padLen: number;
}

function padRows(x: Tensor, padLen: number, value: number): Tensor {
  const [b] = x.shape as [number, number];
  const pad = fromArray(new Array<number>(b * padLen).fill(value), [b, padLen], { dtype: x.dtype });
  return cat([x, pad], 1);
}

/** Pads every given [B, T] (or [B, T, C]) input to the next multiple of `block` along T. */
export function padToBlockSize(block: number, inputs: PadInputs, opts: PadOptions = {}): Padded {
  const ref = inputs.inputIds ?? inputs.inputsEmbeds ?? inputs.attentionMask;
  if (!ref) throw new DSShapeError('padToBlockSize: give inputIds, inputsEmbeds or attentionMask');
  if (!Number.isInteger(block) || block < 1) throw new DSShapeError(`padToBlockSize: block ${block} must be a positive integer`);
  const t = ref.shape[1]!;
  const padLen = (block - (t % block)) % block;
  const padTokenId = opts.padTokenId ?? 0;
  for (const [name, x] of Object.entries(inputs) as [string, Tensor | undefined][]) {
    if (x && x.shape[1] !== t) throw new DSShapeError(`padToBlockSize: ${name} has ${x.shape[1]} tokens but the batch has ${t}`);
  }
  if (padLen === 0) return { ...inputs, padLen };
  const out: Padded = { padLen };
  if (inputs.inputIds) out.inputIds = padRows(inputs.inputIds, padLen, padTokenId);
  if (inputs.attentionMask) out.attentionMask = padRows(inputs.attentionMask, padLen, 0);
  if (inputs.tokenTypeIds) out.tokenTypeIds = padRows(inputs.tokenTypeIds, padLen, 0);
  if (inputs.positionIds) out.positionIds = padRows(inputs.positionIds, padLen, padTokenId);
  if (inputs.inputsEmbeds) {
    if (!opts.embed) throw new DSShapeError('padToBlockSize: inputsEmbeds needs opts.embed to make the embeddings of the pad tokens');
    const b = inputs.inputsEmbeds.shape[0]!;
    const ids = fromArray(new Array<number>(b * padLen).fill(padTokenId), [b, padLen], { dtype: 'i32' });
    out.inputsEmbeds = cat([inputs.inputsEmbeds, opts.embed(ids)], 1);
  }
  return out;
}

/** Cuts the padding off a [B, T + padLen, ...] output. */
export function unpadSequenceOutput(padLen: number, output: Tensor): Tensor {
  if (padLen === 0) return output;
  return narrow(output, 1, 0, output.shape[1]! - padLen);
}
