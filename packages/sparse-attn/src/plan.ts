// The look-up tables of a block layout for one sequence length (DeepSpeed builds LUTs for its SDD,
// DSD and softmax kernels from `layout.nonzero()`). Block rows are grouped by how many blocks they
// hold, so that each group runs as one batched product over gathered blocks with no padding:
// a group of R rows with n blocks each is R independent [block, D] x [D, n * block] products.
import { DSConfigError, DSShapeError } from '@ds/tensor';

import type { BlockLayout } from './layout/layout.js';

/** Block sizes the kernels take: powers of two up to 128 (DeepSpeed's Triton kernels take 16-128; cuda kernels here will use the same tiles, so a config that runs on the cpu runs there). */
export const SUPPORTED_BLOCKS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128];

export function checkBlock(block: number, where: string): void {
  if (!SUPPORTED_BLOCKS.includes(block)) {
    throw new DSConfigError(`${where}: block size ${block} is not supported by the block-sparse kernels; use one of ${SUPPORTED_BLOCKS.join(', ')}`);
  }
}

/** Rows of the layout that hold the same number of blocks. */
export interface RowGroup {
  /** Blocks per row. */
  readonly n: number;
  /** (head, block row) of each row, in layout order. */
  readonly heads: Int32Array;
  readonly rows: Int32Array;
  /** Block columns of each row, row-major [R, n], ascending. */
  readonly cols: Int32Array;
  /** Every row's last block is its diagonal block (then a causal mask is the same for all rows). */
  readonly diagonalLast: boolean;
}

export interface BlockPlan {
  readonly heads: number;
  readonly blocks: number;
  readonly block: number;
  readonly causal: boolean;
  readonly groups: readonly RowGroup[];
  /** Blocks computed: layout blocks minus those above the diagonal when causal. */
  readonly nnz: number;
}

/**
 * Groups the rows of `layout` by block count. With `causal`, blocks above the diagonal are dropped
 * (every token there is masked anyway). A row left without blocks is an error: its softmax would
 * have nothing to normalise over.
 */
export function planLayout(layout: BlockLayout, block: number, causal: boolean, what = 'sparse attention'): BlockPlan {
  checkBlock(block, what);
  const nb = layout.blocks;
  const byCount = new Map<number, { heads: number[]; rows: number[]; cols: number[] }>();
  let nnz = 0;
  for (let h = 0; h < layout.heads; h++) {
    for (let r = 0; r < nb; r++) {
      const cols: number[] = [];
      const last = causal ? r : nb - 1;
      for (let c = 0; c <= last; c++) if (layout.get(h, r, c)) cols.push(c);
      if (cols.length === 0) {
        throw new DSShapeError(
          `${what}: block row ${r} of head ${h} has no block${causal ? ' at or left of the diagonal (the attention is causal)' : ''}, so its queries attend to nothing; ` +
            'set at least one block in every row (a local window does)',
        );
      }
      let g = byCount.get(cols.length);
      if (!g) byCount.set(cols.length, (g = { heads: [], rows: [], cols: [] }));
      g.heads.push(h);
      g.rows.push(r);
      g.cols.push(...cols);
      nnz += cols.length;
    }
  }
  const groups = [...byCount.entries()]
    .sort(([a], [b]) => a - b)
    .map(([n, g]) => ({ n, heads: Int32Array.from(g.heads), rows: Int32Array.from(g.rows), cols: Int32Array.from(g.cols), diagonalLast: g.rows.every((r, j) => g.cols[j * n + n - 1] === r) }));
  return { heads: layout.heads, blocks: nb, block, causal, groups, nnz };
}
