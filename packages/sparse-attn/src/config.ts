// The `sparse_attention` section: DeepSpeed's keys and defaults (runtime/config.py's
// get_sparse_attention and constants.py). DeepSpeed reads only the keys of the chosen mode and
// ignores the rest; here a key that the mode does not read is an error naming the mode's keys, so no
// key is accepted without effect. Unknown keys are errors (strict object).
import { DSConfigError } from '@ds/core';
import { z } from 'zod';

import type { AttentionDirection } from './layout/sparsity-config.js';
import {
  BigBirdSparsityConfig,
  BSLongformerSparsityConfig,
  DenseSparsityConfig,
  FixedSparsityConfig,
  VariableSparsityConfig,
  type SparsityConfig,
} from './layout/sparsity-config.js';

export const SPARSE_MODES = ['dense', 'fixed', 'variable', 'bigbird', 'bslongformer'] as const;
export type SparseMode = (typeof SPARSE_MODES)[number];

/** DeepSpeed's defaults when a key is absent (constants.py; bigbird's num_random_blocks is 0 from the config, 1 in the class). */
const DEFAULTS = {
  block: 16,
  different_layout_per_head: false,
  num_local_blocks: 4,
  num_global_blocks: 1,
  attention: 'bidirectional' as AttentionDirection,
  horizontal_global_attention: false,
  num_different_global_patterns: 1,
  num_random_blocks: 0,
  local_window_blocks: [4],
  global_block_indices: [0],
  global_block_end_indices: null as number[] | null,
  num_sliding_window_blocks: 3,
};

type Key = keyof typeof DEFAULTS;

/** The keys each mode reads, besides `mode`. */
export const MODE_KEYS: Readonly<Record<SparseMode, readonly Key[]>> = {
  dense: ['block'],
  fixed: ['block', 'different_layout_per_head', 'num_local_blocks', 'num_global_blocks', 'attention', 'horizontal_global_attention', 'num_different_global_patterns'],
  variable: ['block', 'different_layout_per_head', 'num_random_blocks', 'local_window_blocks', 'global_block_indices', 'global_block_end_indices', 'attention', 'horizontal_global_attention'],
  bigbird: ['block', 'different_layout_per_head', 'num_random_blocks', 'num_sliding_window_blocks', 'num_global_blocks', 'attention'],
  bslongformer: ['block', 'different_layout_per_head', 'num_sliding_window_blocks', 'global_block_indices', 'global_block_end_indices', 'attention'],
};

const int = (min: number) => z.number().int().min(min);
const direction = z.enum(['unidirectional', 'bidirectional']);

const shape = {
  mode: z.enum(SPARSE_MODES).optional(),
  block: int(1).optional(),
  different_layout_per_head: z.boolean().optional(),
  num_local_blocks: int(1).optional(),
  num_global_blocks: int(0).optional(),
  attention: direction.optional(),
  horizontal_global_attention: z.boolean().optional(),
  num_different_global_patterns: int(1).optional(),
  num_random_blocks: int(0).optional(),
  local_window_blocks: z.array(int(1)).min(1).optional(),
  global_block_indices: z.array(int(0)).optional(),
  global_block_end_indices: z.array(int(0)).nullable().optional(),
  num_sliding_window_blocks: int(0).optional(),
};

/** The validated section: the mode and the keys it reads, defaults filled in. */
export interface SparseAttentionConfig {
  mode: SparseMode;
  block: number;
  different_layout_per_head: boolean;
  num_local_blocks: number;
  num_global_blocks: number;
  attention: AttentionDirection;
  horizontal_global_attention: boolean;
  num_different_global_patterns: number;
  num_random_blocks: number;
  local_window_blocks: number[];
  global_block_indices: number[];
  global_block_end_indices: number[] | null;
  num_sliding_window_blocks: number;
}

type Raw = z.infer<z.ZodObject<typeof shape>>;

function modeOf(c: Raw): SparseMode {
  return c.mode ?? 'fixed';
}

export const sparseAttentionSchema = z
  .strictObject(shape)
  .superRefine((c, ctx) => {
    const mode = modeOf(c);
    const reads = new Set<string>(['mode', ...MODE_KEYS[mode]]);
    for (const key of Object.keys(c)) {
      if ((c as Record<string, unknown>)[key] === undefined || reads.has(key)) continue;
      ctx.addIssue({ code: 'custom', path: [key], message: `'${key}' has no effect in mode '${mode}' (it reads ${[...reads].join(', ')}); remove it or choose a mode that uses it` });
    }
    // The pattern's own rules (num_local_blocks a multiple of num_global_blocks, ...) at validation
    // time rather than when the kernel is made; they do not depend on the head count.
    try {
      sparsityConfigFrom({ ...DEFAULTS, ...c, mode } as SparseAttentionConfig, 1);
    } catch (err) {
      if (!(err instanceof DSConfigError)) throw err;
      ctx.addIssue({ code: 'custom', path: [], message: err.message });
    }
  })
  .transform((c) => {
    const mode = modeOf(c);
    const out: Record<string, unknown> = { mode };
    for (const key of MODE_KEYS[mode]) out[key] = c[key] ?? DEFAULTS[key];
    return out;
  });

/** The typed section of a config that has one; defaults for the keys its mode does not read. */
export function sparseConfigOf(config: Readonly<Record<string, unknown>>): SparseAttentionConfig {
  const section = config.sparse_attention;
  if (section === undefined || section === null) throw new DSConfigError('sparse_attention: the config has no sparse_attention section');
  const parsed = sparseAttentionSchema.safeParse(section);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  - sparse_attention.${i.path.join('.')}: ${i.message}`);
    throw new DSConfigError(`sparse_attention is not valid:\n${lines.join('\n')}`);
  }
  return { ...DEFAULTS, ...parsed.data } as SparseAttentionConfig;
}

/** The SparsityConfig of a validated section for a layer with `numHeads` heads (DeepSpeed's get_sparsity_config). */
export function sparsityConfigFrom(c: SparseAttentionConfig, numHeads: number): SparsityConfig {
  const base = { block: c.block, differentLayoutPerHead: c.different_layout_per_head };
  switch (c.mode) {
    case 'dense':
      return new DenseSparsityConfig(numHeads, { block: c.block });
    case 'fixed':
      return new FixedSparsityConfig(numHeads, {
        ...base,
        numLocalBlocks: c.num_local_blocks,
        numGlobalBlocks: c.num_global_blocks,
        attention: c.attention,
        horizontalGlobalAttention: c.horizontal_global_attention,
        numDifferentGlobalPatterns: c.num_different_global_patterns,
      });
    case 'variable':
      return new VariableSparsityConfig(numHeads, {
        ...base,
        numRandomBlocks: c.num_random_blocks,
        localWindowBlocks: c.local_window_blocks,
        globalBlockIndices: c.global_block_indices,
        globalBlockEndIndices: c.global_block_end_indices,
        attention: c.attention,
        horizontalGlobalAttention: c.horizontal_global_attention,
      });
    case 'bigbird':
      return new BigBirdSparsityConfig(numHeads, {
        ...base,
        numRandomBlocks: c.num_random_blocks,
        numSlidingWindowBlocks: c.num_sliding_window_blocks,
        numGlobalBlocks: c.num_global_blocks,
        attention: c.attention,
      });
    case 'bslongformer':
      return new BSLongformerSparsityConfig(numHeads, {
        ...base,
        numSlidingWindowBlocks: c.num_sliding_window_blocks,
        globalBlockIndices: c.global_block_indices,
        globalBlockEndIndices: c.global_block_end_indices,
        attention: c.attention,
      });
  }
}
