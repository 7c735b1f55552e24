export { sparseAttention } from './plugin.js';
export { sparseAttentionSchema, sparseConfigOf, sparsityConfigFrom, SPARSE_MODES, MODE_KEYS } from './config.js';
export type { SparseAttentionConfig, SparseMode } from './config.js';
export { BlockLayout } from './layout/layout.js';
export {
  SparsityConfig,
  DenseSparsityConfig,
  FixedSparsityConfig,
  VariableSparsityConfig,
  BigBirdSparsityConfig,
  BSLongformerSparsityConfig,
  LocalSlidingWindowSparsityConfig,
} from './layout/sparsity-config.js';
export type {
  AttentionDirection,
  SparsityBaseOptions,
  FixedOptions,
  VariableOptions,
  BigBirdOptions,
  BSLongformerOptions,
  LocalSlidingWindowOptions,
} from './layout/sparsity-config.js';
export { planLayout, checkBlock, SUPPORTED_BLOCKS } from './plan.js';
export type { BlockPlan, RowGroup } from './plan.js';
export { blockSparseAttention, MASKED } from './block-sparse-attention.js';
export type { BlockSparseOptions } from './block-sparse-attention.js';
export { SparseSelfAttention, SPARSE_ATTENTION } from './sparse-self-attention.js';
export type { SparseSelfAttentionOptions } from './sparse-self-attention.js';
export { padToBlockSize, unpadSequenceOutput } from './pad.js';
export type { PadInputs, PadOptions, Padded } from './pad.js';
