// A block layout: for each head, which (row, column) blocks of the T x T attention matrix are
// computed. DeepSpeed keeps it as an int64 torch tensor [num_heads, T/block, T/block] of 0/1 flags;
// here it is a Uint8Array in the same row-major order, with its dimensions beside it.
import { DSShapeError } from '@ds/tensor';

export class BlockLayout {
  readonly flags: Uint8Array;

  constructor(
    readonly heads: number,
    readonly blocks: number,
    flags?: Uint8Array,
  ) {
    this.flags = flags ?? new Uint8Array(heads * blocks * blocks);
    if (this.flags.length !== heads * blocks * blocks) {
      throw new DSShapeError(`BlockLayout: ${this.flags.length} flags for ${heads} heads x ${blocks} x ${blocks} blocks`);
    }
  }

  get(h: number, r: number, c: number): number {
    return this.flags[(h * this.blocks + r) * this.blocks + c]!;
  }

  set(h: number, r: number, c: number, v = 1): void {
    this.flags[(h * this.blocks + r) * this.blocks + c] = v;
  }

  /** Sets rows [r0, r1) x columns [c0, c1) of head h (bounds clipped to the layout). */
  fill(h: number, r0: number, r1: number, c0: number, c1: number): void {
    const n = this.blocks;
    for (let r = Math.max(0, r0); r < Math.min(r1, n); r++) for (let c = Math.max(0, c0); c < Math.min(c1, n); c++) this.set(h, r, c);
  }

  /** Clears every block above the diagonal of every head (torch.tril on the layout). */
  tril(): void {
    for (let h = 0; h < this.heads; h++) for (let r = 0; r < this.blocks; r++) for (let c = r + 1; c < this.blocks; c++) this.set(h, r, c, 0);
  }

  /** Copies head 0 to every other head (DeepSpeed's check_and_propagate_first_head_layout). */
  propagateFirstHead(): void {
    const per = this.blocks * this.blocks;
    for (let h = 1; h < this.heads; h++) this.flags.copyWithin(h * per, 0, per);
  }

  /** Number of non-zero blocks over all heads. */
  get nnz(): number {
    let n = 0;
    for (const f of this.flags) n += f;
    return n;
  }

  /** Fraction of blocks that are set. */
  get density(): number {
    return this.flags.length === 0 ? 0 : this.nnz / this.flags.length;
  }

  /** Head h as rows of 0/1 (for tests and printing). */
  rows(h: number): number[][] {
    return Array.from({ length: this.blocks }, (_, r) => Array.from({ length: this.blocks }, (_, c) => this.get(h, r, c)));
  }
}
