// Partition units: how model states are cut into contiguous runs and, under ZeRO, into equal per-rank
// pieces. Stage 0 uses the same units (with a world of one) as its gradient buckets.
//
// A unit is a run of parameters laid out contiguously (a gradient bucket in stages 1 and 2, a
// module's parameters in stage 3), padded with zeros to a multiple of 2 x world so that it splits
// into `world` equal blocks whose starts stay 4-byte aligned for 16-bit data (DeepSpeed's
// nccl_start_alignment_factor). Rank r owns block r of every unit; its shard is the concatenation
// of those blocks. Because each unit divides evenly, one reduce-scatter of the unit's gradients
// leaves each rank exactly its block, and one in-place all-gather rebuilds the unit's parameters:
// communication volume stays that of an all-reduce, with no irregular per-owner runs.

export interface Unit {
  /** Indices into the manager's parameter list, in layout order. */
  params: number[];
  /** Element offset of each of those parameters inside the unit. */
  offsets: number[];
  /** Elements of real data. */
  numel: number;
  /** numel padded to a multiple of 2 x world. */
  padded: number;
  /** padded / world: the size of each rank's block. */
  block: number;
  /** Start of the unit in a flat buffer holding every unit (stages 1 and 2). */
  flatStart: number;
  /** Start of this rank's block in the shard. */
  shardStart: number;
}

export interface PartitionPlan {
  world: number;
  rank: number;
  units: Unit[];
  /** Sum of padded sizes: the full flat buffer. */
  flatNumel: number;
  /** Sum of blocks: one rank's shard. */
  shardNumel: number;
  /** For each parameter, its unit index and its element offset in the flat buffer. */
  unitOf: number[];
  flatOffset: number[];
}

export function alignTo(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/**
 * Builds a plan from groups of parameter indices (each group one unit, in order). `sizes[i]` is
 * parameter i's element count. `align` pads each unit (default 2 x world, see above; 1 for an
 * unpartitioned layout, which then equals flat.ts's reverseLayout when the groups run back to front).
 */
export function planUnits(groups: readonly (readonly number[])[], sizes: readonly number[], world: number, rank: number, align = 2 * world): PartitionPlan {
  const units: Unit[] = [];
  const unitOf = new Array<number>(sizes.length).fill(-1);
  const flatOffset = new Array<number>(sizes.length).fill(-1);
  let flat = 0;
  let shard = 0;
  for (const group of groups) {
    const offsets: number[] = [];
    let at = 0;
    for (const i of group) {
      offsets.push(at);
      unitOf[i] = units.length;
      flatOffset[i] = flat + at;
      at += sizes[i]!;
    }
    const padded = alignTo(Math.max(at, 1), align);
    units.push({ params: [...group], offsets, numel: at, padded, block: padded / world, flatStart: flat, shardStart: shard });
    flat += padded;
    shard += padded / world;
  }
  return { world, rank, units, flatNumel: flat, shardNumel: shard, unitOf, flatOffset };
}

/**
 * Stage 1/2 buckets: parameters back to front (backward produces the last layer's gradients
 * first), cut whenever the next parameter would push a bucket past `bucketElements`; a parameter
 * larger than that gets a bucket of its own.
 */
export function bucketGroups(sizes: readonly number[], bucketElements: number): number[][] {
  const groups: number[][] = [];
  let current: number[] = [];
  let fill = 0;
  for (let i = sizes.length - 1; i >= 0; i--) {
    const n = sizes[i]!;
    if (current.length > 0 && fill + n > bucketElements) {
      groups.push(current);
      current = [];
      fill = 0;
    }
    current.push(i);
    fill += n;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** The part of parameter `p` (at `offset` in its unit, `n` elements) that falls in block `r`: [from, to) of the parameter. */
export function pieceOf(offset: number, n: number, block: number, r: number): [number, number] {
  const from = Math.max(0, r * block - offset);
  const to = Math.min(n, (r + 1) * block - offset);
  return to > from ? [from, to] : [0, 0];
}
