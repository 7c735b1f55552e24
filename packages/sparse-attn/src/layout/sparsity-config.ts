// The sparsity configurations of DeepSpeed's ops/sparse_attention/sparsity_config.py: each makes a
// per-head block layout for a sequence length. Same parameters, same defaults, same rules; the
// differences: random blocks come from a seeded Generator (every rank builds the same layout, so
// DeepSpeed's broadcast of rank 0's layout is not needed), and invalid parameters throw
// DSConfigError naming the parameter and value.
import { DSConfigError, DSShapeError, Generator } from '@ds/tensor';

import { BlockLayout } from './layout.js';

export type AttentionDirection = 'unidirectional' | 'bidirectional';

export interface SparsityBaseOptions {
  /** Block size in tokens; default 16. */
  block?: number;
  /** True: each head gets its own layout; false: every head copies head 0's. Default false. */
  differentLayoutPerHead?: boolean;
}

function checkDirection(where: string, attention: string): AttentionDirection {
  if (attention !== 'unidirectional' && attention !== 'bidirectional') {
    throw new DSConfigError(`${where}: attention '${attention}' is not supported; use 'unidirectional' or 'bidirectional'`);
  }
  return attention;
}

function positiveInt(where: string, name: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min) throw new DSConfigError(`${where}: ${name} must be an integer >= ${min}, got ${v}`);
}

/** `count` distinct values drawn uniformly from [0, n) (Python's random.sample over a range). */
export function sampleDistinct(g: Generator, n: number, count: number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(g.uniform() * (n - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, count);
}

/** DeepSpeed's SparsityConfig: the block size and whether heads differ. */
export abstract class SparsityConfig {
  readonly block: number;
  readonly differentLayoutPerHead: boolean;
  /** Heads whose layouts are computed: all of them, or head 0 alone (then copied). */
  readonly numLayoutHeads: number;

  constructor(readonly numHeads: number, opts: SparsityBaseOptions = {}) {
    this.block = opts.block ?? 16;
    this.differentLayoutPerHead = opts.differentLayoutPerHead ?? false;
    positiveInt(this.constructor.name, 'num_heads', numHeads);
    positiveInt(this.constructor.name, 'block', this.block);
    this.numLayoutHeads = this.differentLayoutPerHead ? numHeads : 1;
  }

  /** An empty layout for seqLen tokens; seqLen must be a multiple of the block. */
  protected setupLayout(seqLen: number): BlockLayout {
    if (!Number.isInteger(seqLen) || seqLen <= 0 || seqLen % this.block !== 0) {
      throw new DSShapeError(`${this.constructor.name}: sequence length ${seqLen} is not a multiple of the block size ${this.block}; pad it (padToBlockSize) or choose a block that divides it`);
    }
    return new BlockLayout(this.numHeads, seqLen / this.block);
  }

  /** The layout [num_heads, seqLen / block, seqLen / block] of this pattern. */
  makeLayout(seqLen: number): BlockLayout {
    const layout = this.setupLayout(seqLen);
    for (let h = 0; h < this.numLayoutHeads; h++) this.setHead(h, layout);
    this.finish(layout);
    if (!this.differentLayoutPerHead) layout.propagateFirstHead();
    return layout;
  }

  /** Sets the blocks of head h. */
  protected abstract setHead(h: number, layout: BlockLayout): void;

  /** Whole-layout step after every head is set (tril for unidirectional BigBird / BSLongformer). */
  protected finish(_layout: BlockLayout): void {}
}

/** Every block set: dense attention, for comparison. */
export class DenseSparsityConfig extends SparsityConfig {
  protected setHead(h: number, layout: BlockLayout): void {
    layout.fill(h, 0, layout.blocks, 0, layout.blocks);
  }
}

export interface FixedOptions extends SparsityBaseOptions {
  numLocalBlocks?: number;
  numGlobalBlocks?: number;
  attention?: AttentionDirection;
  horizontalGlobalAttention?: boolean;
  numDifferentGlobalPatterns?: number;
}

/** Sparse Transformers' "fixed" pattern: local windows plus each window's representative blocks as global columns. */
export class FixedSparsityConfig extends SparsityConfig {
  readonly numLocalBlocks: number;
  readonly numGlobalBlocks: number;
  readonly attention: AttentionDirection;
  readonly horizontalGlobalAttention: boolean;
  readonly numDifferentGlobalPatterns: number;

  constructor(numHeads: number, opts: FixedOptions = {}) {
    super(numHeads, opts);
    const w = 'FixedSparsityConfig';
    this.numLocalBlocks = opts.numLocalBlocks ?? 4;
    this.numGlobalBlocks = opts.numGlobalBlocks ?? 1;
    positiveInt(w, 'num_local_blocks', this.numLocalBlocks);
    positiveInt(w, 'num_global_blocks', this.numGlobalBlocks);
    if (this.numLocalBlocks % this.numGlobalBlocks !== 0) {
      throw new DSConfigError(`${w}: num_local_blocks ${this.numLocalBlocks} must be a multiple of num_global_blocks ${this.numGlobalBlocks}`);
    }
    this.attention = checkDirection(w, opts.attention ?? 'bidirectional');
    this.horizontalGlobalAttention = opts.horizontalGlobalAttention ?? false;
    if (this.horizontalGlobalAttention && this.attention !== 'bidirectional') {
      throw new DSConfigError(`${w}: horizontal_global_attention needs attention 'bidirectional' (got '${this.attention}')`);
    }
    this.numDifferentGlobalPatterns = opts.numDifferentGlobalPatterns ?? 1;
    positiveInt(w, 'num_different_global_patterns', this.numDifferentGlobalPatterns);
    if (this.numDifferentGlobalPatterns > 1 && !this.differentLayoutPerHead) {
      throw new DSConfigError(`${w}: num_different_global_patterns ${this.numDifferentGlobalPatterns} > 1 needs different_layout_per_head true`);
    }
    const most = this.numLocalBlocks / this.numGlobalBlocks;
    if (this.numDifferentGlobalPatterns > most) {
      throw new DSConfigError(`${w}: num_different_global_patterns ${this.numDifferentGlobalPatterns} exceeds num_local_blocks / num_global_blocks = ${this.numLocalBlocks} / ${this.numGlobalBlocks} = ${most}`);
    }
  }

  protected setHead(h: number, layout: BlockLayout): void {
    this.setLocal(h, layout);
    this.setGlobal(h, layout);
  }

  /** Non-overlapping windows of num_local_blocks: full (bidirectional) or lower-triangular (unidirectional). */
  private setLocal(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    for (let i = 0; i < n; i += this.numLocalBlocks) {
      const end = Math.min(i + this.numLocalBlocks, n);
      for (let row = i; row < end; row++) layout.fill(h, row, row + 1, i, this.attention === 'unidirectional' ? row + 1 : end);
    }
  }

  /** Global columns (and rows when horizontal): the representative blocks of every window, the last window's clipped. */
  private setGlobal(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    const L = this.numLocalBlocks;
    const G = this.numGlobalBlocks;
    const first = L - (1 + (h % this.numDifferentGlobalPatterns)) * G;
    const mark = (start: number, stop: number): void => {
      layout.fill(h, this.attention === 'bidirectional' ? 0 : start, n, start, stop);
      if (this.horizontalGlobalAttention) layout.fill(h, start, stop, 0, n);
    };
    const whole = n - (n % L);
    for (let i = first; i < whole; i += L) mark(i, i + G);
    if (whole < n) {
      const start = Math.min(whole + first, n - G);
      mark(start, start + G);
    }
  }
}

export interface VariableOptions extends SparsityBaseOptions {
  numRandomBlocks?: number;
  localWindowBlocks?: number[];
  globalBlockIndices?: number[];
  globalBlockEndIndices?: number[] | null;
  attention?: AttentionDirection;
  horizontalGlobalAttention?: boolean;
  /** Seed of the random blocks (same on every rank). Default 0. */
  seed?: number;
}

function checkGlobalRanges(w: string, starts: number[], ends: number[] | null): void {
  for (const s of starts) positiveInt(w, 'global_block_indices entry', s, 0);
  if (ends === null) return;
  if (ends.length !== starts.length) {
    throw new DSConfigError(`${w}: global_block_end_indices has ${ends.length} entries but global_block_indices has ${starts.length}; they must pair up`);
  }
  starts.forEach((s, i) => {
    if (s >= ends[i]!) throw new DSConfigError(`${w}: global block start index ${s} must be smaller than its end index ${ends[i]}`);
  });
}

/** The [start, end) block ranges of global_block_indices (single blocks) or their pairs with end indices. */
function globalRanges(starts: number[], ends: number[] | null, n: number): [number, number][] {
  const out: [number, number][] = [];
  starts.forEach((s, i) => {
    if (s < n) out.push([s, Math.min(ends ? ends[i]! : s + 1, n)]);
  });
  return out;
}

/** Fixed extended: random blocks per row, windows of listed sizes, global indices or ranges. */
export class VariableSparsityConfig extends SparsityConfig {
  readonly numRandomBlocks: number;
  readonly localWindowBlocks: number[];
  readonly globalBlockIndices: number[];
  readonly globalBlockEndIndices: number[] | null;
  readonly attention: AttentionDirection;
  readonly horizontalGlobalAttention: boolean;
  readonly seed: number;

  constructor(numHeads: number, opts: VariableOptions = {}) {
    super(numHeads, opts);
    const w = 'VariableSparsityConfig';
    this.numRandomBlocks = opts.numRandomBlocks ?? 0;
    positiveInt(w, 'num_random_blocks', this.numRandomBlocks, 0);
    this.localWindowBlocks = [...(opts.localWindowBlocks ?? [4])];
    if (this.localWindowBlocks.length === 0) throw new DSConfigError(`${w}: local_window_blocks must list at least one window size`);
    for (const s of this.localWindowBlocks) positiveInt(w, 'local_window_blocks entry', s);
    this.globalBlockIndices = [...(opts.globalBlockIndices ?? [0])];
    this.globalBlockEndIndices = opts.globalBlockEndIndices ? [...opts.globalBlockEndIndices] : null;
    checkGlobalRanges(w, this.globalBlockIndices, this.globalBlockEndIndices);
    this.attention = checkDirection(w, opts.attention ?? 'bidirectional');
    this.horizontalGlobalAttention = opts.horizontalGlobalAttention ?? false;
    if (this.horizontalGlobalAttention && this.attention !== 'bidirectional') {
      throw new DSConfigError(`${w}: horizontal_global_attention needs attention 'bidirectional' (got '${this.attention}')`);
    }
    this.seed = opts.seed ?? 0;
  }

  override makeLayout(seqLen: number): BlockLayout {
    this.rng = new Generator(this.seed);
    return super.makeLayout(seqLen);
  }

  private rng = new Generator(0);

  protected setHead(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    if (n < this.numRandomBlocks) throw new DSConfigError(`VariableSparsityConfig: num_random_blocks ${this.numRandomBlocks} exceeds the ${n} blocks of a row`);
    for (let row = 0; row < n; row++) for (const c of sampleDistinct(this.rng, n, this.numRandomBlocks)) layout.set(h, row, c);
    this.setLocal(h, layout);
    for (const [s, e] of globalRanges(this.globalBlockIndices, this.globalBlockEndIndices, n)) {
      if (this.horizontalGlobalAttention) layout.fill(h, s, e, 0, n);
      layout.fill(h, this.attention === 'bidirectional' ? 0 : s, n, s, e);
    }
  }

  /** Windows take the listed sizes in order; the last size repeats to the end. */
  private setLocal(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    const window = (start: number, end: number): void => {
      for (let row = start; row < end; row++) layout.fill(h, row, row + 1, start, this.attention === 'unidirectional' ? row + 1 : end);
    };
    let start = 0;
    for (const size of this.localWindowBlocks) {
      window(start, Math.min(start + size, n));
      start += size;
    }
    const last = this.localWindowBlocks[this.localWindowBlocks.length - 1]!;
    for (let i = start; i < n; i += last) window(i, Math.min(i + last, n));
  }
}

export interface BigBirdOptions extends SparsityBaseOptions {
  numRandomBlocks?: number;
  numSlidingWindowBlocks?: number;
  numGlobalBlocks?: number;
  attention?: AttentionDirection;
  seed?: number;
}

/** Sets the window [row - w/2, row + w/2] of every row (clipped). */
function slidingWindow(h: number, layout: BlockLayout, blocks: number, upper: boolean): void {
  const n = layout.blocks;
  const w = Math.floor(blocks / 2);
  for (let row = 0; row < n; row++) layout.fill(h, row, row + 1, row - w, upper ? row + w + 1 : row + 1);
}

function checkWindow(w: string, name: string, v: number, n: number): void {
  if (n < v) throw new DSConfigError(`${w}: ${name} ${v} exceeds the ${n} blocks of a row; use a smaller value or a longer sequence`);
}

/** BigBird: random blocks, a sliding window and the first blocks as global rows and columns. */
export class BigBirdSparsityConfig extends SparsityConfig {
  readonly numRandomBlocks: number;
  readonly numSlidingWindowBlocks: number;
  readonly numGlobalBlocks: number;
  readonly attention: AttentionDirection;
  readonly seed: number;
  private rng = new Generator(0);

  constructor(numHeads: number, opts: BigBirdOptions = {}) {
    super(numHeads, opts);
    const w = 'BigBirdSparsityConfig';
    this.numRandomBlocks = opts.numRandomBlocks ?? 1;
    this.numSlidingWindowBlocks = opts.numSlidingWindowBlocks ?? 3;
    this.numGlobalBlocks = opts.numGlobalBlocks ?? 1;
    positiveInt(w, 'num_random_blocks', this.numRandomBlocks, 0);
    positiveInt(w, 'num_sliding_window_blocks', this.numSlidingWindowBlocks, 0);
    positiveInt(w, 'num_global_blocks', this.numGlobalBlocks, 0);
    this.attention = checkDirection(w, opts.attention ?? 'bidirectional');
    this.seed = opts.seed ?? 0;
  }

  override makeLayout(seqLen: number): BlockLayout {
    this.rng = new Generator(this.seed);
    return super.makeLayout(seqLen);
  }

  protected setHead(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    const w = 'BigBirdSparsityConfig';
    checkWindow(w, 'num_random_blocks', this.numRandomBlocks, n);
    checkWindow(w, 'num_sliding_window_blocks', this.numSlidingWindowBlocks, n);
    checkWindow(w, 'num_global_blocks', this.numGlobalBlocks, n);
    for (let row = 0; row < n; row++) {
      const range = this.attention === 'bidirectional' ? n : row + 1;
      // A unidirectional row near the start has fewer candidate columns than random blocks: take them all.
      for (const c of sampleDistinct(this.rng, range, Math.min(this.numRandomBlocks, range))) layout.set(h, row, c);
    }
    slidingWindow(h, layout, this.numSlidingWindowBlocks, true);
    layout.fill(h, 0, this.numGlobalBlocks, 0, n);
    layout.fill(h, 0, n, 0, this.numGlobalBlocks);
  }

  protected override finish(layout: BlockLayout): void {
    if (this.attention === 'unidirectional') layout.tril();
  }
}

export interface BSLongformerOptions extends SparsityBaseOptions {
  numSlidingWindowBlocks?: number;
  globalBlockIndices?: number[];
  globalBlockEndIndices?: number[] | null;
  attention?: AttentionDirection;
}

/** Block-sparse Longformer: a sliding window plus global indices or ranges as full rows and columns. */
export class BSLongformerSparsityConfig extends SparsityConfig {
  readonly numSlidingWindowBlocks: number;
  readonly globalBlockIndices: number[];
  readonly globalBlockEndIndices: number[] | null;
  readonly attention: AttentionDirection;

  constructor(numHeads: number, opts: BSLongformerOptions = {}) {
    super(numHeads, opts);
    const w = 'BSLongformerSparsityConfig';
    this.numSlidingWindowBlocks = opts.numSlidingWindowBlocks ?? 3;
    positiveInt(w, 'num_sliding_window_blocks', this.numSlidingWindowBlocks, 0);
    this.globalBlockIndices = [...(opts.globalBlockIndices ?? [0])];
    this.globalBlockEndIndices = opts.globalBlockEndIndices ? [...opts.globalBlockEndIndices] : null;
    checkGlobalRanges(w, this.globalBlockIndices, this.globalBlockEndIndices);
    this.attention = checkDirection(w, opts.attention ?? 'bidirectional');
  }

  protected setHead(h: number, layout: BlockLayout): void {
    const n = layout.blocks;
    checkWindow('BSLongformerSparsityConfig', 'num_sliding_window_blocks', this.numSlidingWindowBlocks, n);
    slidingWindow(h, layout, this.numSlidingWindowBlocks, true);
    for (const [s, e] of globalRanges(this.globalBlockIndices, this.globalBlockEndIndices, n)) {
      layout.fill(h, s, e, 0, n);
      layout.fill(h, 0, n, s, e);
    }
  }

  protected override finish(layout: BlockLayout): void {
    if (this.attention === 'unidirectional') layout.tril();
  }
}

export interface LocalSlidingWindowOptions {
  block?: number;
  numSlidingWindowBlocks?: number;
  attention?: AttentionDirection;
}

/** A purely local sliding window: [row - w/2, row] (unidirectional) or [row - w/2, row + w/2]. */
export class LocalSlidingWindowSparsityConfig extends SparsityConfig {
  readonly numSlidingWindowBlocks: number;
  readonly attention: AttentionDirection;

  constructor(numHeads: number, opts: LocalSlidingWindowOptions = {}) {
    super(numHeads, { block: opts.block });
    this.numSlidingWindowBlocks = opts.numSlidingWindowBlocks ?? 3;
    positiveInt('LocalSlidingWindowSparsityConfig', 'num_sliding_window_blocks', this.numSlidingWindowBlocks, 0);
    this.attention = checkDirection('LocalSlidingWindowSparsityConfig', opts.attention ?? 'unidirectional');
  }

  protected setHead(h: number, layout: BlockLayout): void {
    checkWindow('LocalSlidingWindowSparsityConfig', 'num_sliding_window_blocks', this.numSlidingWindowBlocks, layout.blocks);
    slidingWindow(h, layout, this.numSlidingWindowBlocks, this.attention === 'bidirectional');
  }
}
