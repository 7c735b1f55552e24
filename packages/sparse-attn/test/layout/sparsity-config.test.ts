// Layouts for small cases, worked out by hand from DeepSpeed's rules
// (deepspeed/ops/sparse_attention/sparsity_config.py; ../shared/reference/deepspeed-techniques.md section 5).
// Each expected matrix is one head: rows are query blocks, columns key blocks.
import { describe, expect, it } from 'vitest';

import {
  BigBirdSparsityConfig,
  BSLongformerSparsityConfig,
  DenseSparsityConfig,
  FixedSparsityConfig,
  LocalSlidingWindowSparsityConfig,
  VariableSparsityConfig,
} from '../../src/index.js';

const B = 4; // block size in these tests: the sequence is blocks * 4 tokens

describe('DenseSparsityConfig', () => {
  it('sets every block of every head', () => {
    const l = new DenseSparsityConfig(2, { block: B }).makeLayout(3 * B);
    expect(l.rows(0)).toEqual([[1, 1, 1], [1, 1, 1], [1, 1, 1]]);
    expect(l.rows(1)).toEqual(l.rows(0));
    expect(l.density).toBe(1);
  });
});

describe('FixedSparsityConfig', () => {
  it('bidirectional: full windows of num_local_blocks, the last block of each window a global column', () => {
    // Windows [0,4) and [4,8); global start = num_local - (1 + h % patterns) * num_global = 3, so columns 3 and 7 for all rows.
    const l = new FixedSparsityConfig(1, { block: B }).makeLayout(8 * B);
    const top = [1, 1, 1, 1, 0, 0, 0, 1];
    const bottom = [0, 0, 0, 1, 1, 1, 1, 1];
    expect(l.rows(0)).toEqual([top, top, top, top, bottom, bottom, bottom, bottom]);
  });

  it('unidirectional with a short last window: lower-triangular windows, global columns from their own row down', () => {
    // 6 blocks: windows [0,4) and the short [4,6). Global column 3 for rows >= 3; the short window's
    // global block is min(4 + 3, 6 - 1) = 5, for rows >= 5.
    const l = new FixedSparsityConfig(1, { block: B, attention: 'unidirectional' }).makeLayout(6 * B);
    expect(l.rows(0)).toEqual([
      [1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0],
      [1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 0, 0],
      [0, 0, 0, 1, 1, 0],
      [0, 0, 0, 1, 1, 1],
    ]);
  });

  it('different global patterns per head, with horizontal global attention', () => {
    // num_local 2, num_global 1, 2 patterns: head 0 starts at 2 - 1 = 1 (columns and rows 1, 3),
    // head 1 at 2 - 2 = 0 (columns and rows 0, 2).
    const l = new FixedSparsityConfig(2, { block: B, differentLayoutPerHead: true, numLocalBlocks: 2, numGlobalBlocks: 1, numDifferentGlobalPatterns: 2, horizontalGlobalAttention: true }).makeLayout(4 * B);
    expect(l.rows(0)).toEqual([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]);
    expect(l.rows(1)).toEqual([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 1, 1]]);
  });

  it('heads copy head 0 unless different_layout_per_head', () => {
    const l = new FixedSparsityConfig(3, { block: B }).makeLayout(8 * B);
    expect(l.rows(2)).toEqual(l.rows(0));
  });

  it('rejects what DeepSpeed rejects, naming the values', () => {
    expect(() => new FixedSparsityConfig(1, { numLocalBlocks: 4, numGlobalBlocks: 3 })).toThrow(/num_local_blocks 4 must be a multiple of num_global_blocks 3/);
    expect(() => new FixedSparsityConfig(1, { numDifferentGlobalPatterns: 2 })).toThrow(/num_different_global_patterns 2 > 1 needs different_layout_per_head/);
    expect(() => new FixedSparsityConfig(2, { differentLayoutPerHead: true, numDifferentGlobalPatterns: 5 })).toThrow(/exceeds num_local_blocks \/ num_global_blocks = 4 \/ 1 = 4/);
    expect(() => new FixedSparsityConfig(1, { attention: 'unidirectional', horizontalGlobalAttention: true })).toThrow(/horizontal_global_attention needs attention 'bidirectional'/);
    expect(() => new FixedSparsityConfig(1, { block: 16 }).makeLayout(100)).toThrow(/sequence length 100 is not a multiple of the block size 16/);
  });
});

describe('VariableSparsityConfig', () => {
  it('windows take the listed sizes in order and the last size repeats; global column 0', () => {
    // local_window_blocks [1, 2]: windows [0,1), [1,3), then [3,5), [5,6).
    const l = new VariableSparsityConfig(1, { block: B, localWindowBlocks: [1, 2] }).makeLayout(6 * B);
    expect(l.rows(0)).toEqual([
      [1, 0, 0, 0, 0, 0],
      [1, 1, 1, 0, 0, 0],
      [1, 1, 1, 0, 0, 0],
      [1, 0, 0, 1, 1, 0],
      [1, 0, 0, 1, 1, 0],
      [1, 0, 0, 0, 0, 1],
    ]);
  });

  it('unidirectional global ranges [start, end) set their columns from row start down (including the block right of the diagonal, as DeepSpeed does)', () => {
    const l = new VariableSparsityConfig(1, { block: B, localWindowBlocks: [2], globalBlockIndices: [2], globalBlockEndIndices: [4], attention: 'unidirectional' }).makeLayout(6 * B);
    expect(l.rows(0)).toEqual([
      [1, 0, 0, 0, 0, 0],
      [1, 1, 0, 0, 0, 0],
      [0, 0, 1, 1, 0, 0],
      [0, 0, 1, 1, 0, 0],
      [0, 0, 1, 1, 1, 0],
      [0, 0, 1, 1, 1, 1],
    ]);
  });

  it('random blocks: num_random_blocks distinct extra columns per row, the same on every build', () => {
    const cfg = new VariableSparsityConfig(1, { block: B, numRandomBlocks: 2, localWindowBlocks: [1], globalBlockIndices: [] });
    const a = cfg.makeLayout(8 * B);
    for (const row of a.rows(0)) expect(row.reduce((s, x) => s + x, 0)).toBeGreaterThanOrEqual(2);
    expect(cfg.makeLayout(8 * B).flags).toEqual(a.flags);
  });

  it('rejects unpaired or empty global ranges', () => {
    expect(() => new VariableSparsityConfig(1, { globalBlockIndices: [0, 2], globalBlockEndIndices: [1] })).toThrow(/global_block_end_indices has 1 entries but global_block_indices has 2/);
    expect(() => new VariableSparsityConfig(1, { globalBlockIndices: [3], globalBlockEndIndices: [3] })).toThrow(/start index 3 must be smaller than its end index 3/);
  });
});

describe('BigBirdSparsityConfig', () => {
  it('bidirectional: window of +-1 block, row 0 and column 0 global', () => {
    const l = new BigBirdSparsityConfig(1, { block: B, numRandomBlocks: 0 }).makeLayout(5 * B);
    expect(l.rows(0)).toEqual([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
      [1, 1, 1, 1, 0],
      [1, 0, 1, 1, 1],
      [1, 0, 0, 1, 1],
    ]);
  });

  it('unidirectional applies tril to the whole layout; random columns only at or left of the diagonal', () => {
    const l = new BigBirdSparsityConfig(1, { block: B, numRandomBlocks: 0, attention: 'unidirectional' }).makeLayout(5 * B);
    expect(l.rows(0)).toEqual([
      [1, 0, 0, 0, 0],
      [1, 1, 0, 0, 0],
      [1, 1, 1, 0, 0],
      [1, 0, 1, 1, 0],
      [1, 0, 0, 1, 1],
    ]);
    const r = new BigBirdSparsityConfig(1, { block: B, numRandomBlocks: 2, attention: 'unidirectional' }).makeLayout(8 * B);
    for (let i = 0; i < 8; i++) for (let j = i + 1; j < 8; j++) expect(r.get(0, i, j)).toBe(0);
  });

  it('rejects a window wider than the row', () => {
    expect(() => new BigBirdSparsityConfig(1, { block: B, numSlidingWindowBlocks: 7 }).makeLayout(5 * B)).toThrow(/num_sliding_window_blocks 7 exceeds the 5 blocks of a row/);
  });
});

describe('BSLongformerSparsityConfig', () => {
  it('bidirectional: sliding window plus block 2 as a full row and column', () => {
    const l = new BSLongformerSparsityConfig(1, { block: B, globalBlockIndices: [2] }).makeLayout(5 * B);
    expect(l.rows(0)).toEqual([
      [1, 1, 1, 0, 0],
      [1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1],
      [0, 0, 1, 1, 1],
      [0, 0, 1, 1, 1],
    ]);
  });

  it('unidirectional global range [0, 2) with a one-block window, then tril', () => {
    const l = new BSLongformerSparsityConfig(1, { block: B, numSlidingWindowBlocks: 1, globalBlockIndices: [0], globalBlockEndIndices: [2], attention: 'unidirectional' }).makeLayout(5 * B);
    expect(l.rows(0)).toEqual([
      [1, 0, 0, 0, 0],
      [1, 1, 0, 0, 0],
      [1, 1, 1, 0, 0],
      [1, 1, 0, 1, 0],
      [1, 1, 0, 0, 1],
    ]);
  });
});

describe('LocalSlidingWindowSparsityConfig', () => {
  it('unidirectional [row - 1, row], bidirectional [row - 1, row + 1] for a window of 3', () => {
    expect(new LocalSlidingWindowSparsityConfig(1, { block: B }).makeLayout(4 * B).rows(0)).toEqual([
      [1, 0, 0, 0],
      [1, 1, 0, 0],
      [0, 1, 1, 0],
      [0, 0, 1, 1],
    ]);
    expect(new LocalSlidingWindowSparsityConfig(1, { block: B, attention: 'bidirectional' }).makeLayout(4 * B).rows(0)).toEqual([
      [1, 1, 0, 0],
      [1, 1, 1, 0],
      [0, 1, 1, 1],
      [0, 0, 1, 1],
    ]);
  });
});
