// The differentiable ops, each forward next to its backward in its own file.
export { cast } from './cast.js';
export { add, sub, mul, div, maximum, minimum, affine, mulScalar, addScalar, neg, exp, log, sqrt, tanh, square, sigmoid } from './elementwise.js';
export { sum, mean, reduceTo } from './reduce.js';
export { reshape, view, contiguous, permute, transpose, narrow, expand, cat, split, chunk, unsqueeze } from './shape.js';
export { matmul, linear, computeDType } from './matmul.js';
export { gelu, softmax, dropout } from './activation.js';
export type { DropoutOptions } from './activation.js';
export { addLayerNorm, layerNorm } from './layer-norm.js';
export { embedding } from './embedding.js';
export { crossEntropy } from './cross-entropy.js';
export { causalAttention, causalAttentionPacked, maskedAttention } from './attention.js';
export type { AttentionOptions, MaskedAttentionOptions } from './attention.js';
export { adamwStep } from './optim.js';
export type { AdamWHyper } from './optim.js';
