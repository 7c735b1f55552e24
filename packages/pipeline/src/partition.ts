// How a PipelineModule's layers are split across stages: DeepSpeed's partition_uniform and
// partition_balanced (runtime/utils.py), written from their rules. A partition is the list of
// stage boundaries `parts` (length stages + 1): stage s owns layers [parts[s], parts[s + 1]).
//
// partitionUniform balances the layer count (the first `layers % stages` stages get one more);
// partitionBalanced finds the smallest possible weight of the heaviest stage by a binary search on
// that bottleneck, probing each candidate with a greedy left-to-right fill over the prefix sums
// (DeepSpeed's _lprobe), then returns the fill of the best bottleneck.

/** Stage boundaries for `items` layers over `parts` stages, layer counts as even as possible. */
export function partitionUniform(items: number, parts: number): number[] {
  const out = new Array<number>(parts + 1).fill(0);
  if (items <= parts) {
    for (let p = 0; p <= parts; p++) out[p] = Math.min(p, items);
    return out;
  }
  const chunk = Math.floor(items / parts);
  const residual = items - chunk * parts;
  for (let p = 0; p <= parts; p++) out[p] = p * chunk + Math.min(p, residual);
  return out;
}

/** Inclusive prefix sums: [3, 4, 5] -> [3, 7, 12]. */
export function prefixSum(weights: readonly number[]): number[] {
  const out: number[] = [];
  let acc = 0;
  for (const w of weights) out.push((acc += w));
  return out;
}

/** First index in [lo, hi) where sorted[i] >= x (Python's bisect_left). */
function bisectLeft(sorted: readonly number[], x: number, lo: number, hi: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Greedy fill with at most `bottleneck` weight per stage; `ok` when everything fits in `parts` stages. */
function probe(prefix: readonly number[], parts: number, bottleneck: number): { bounds: number[]; ok: boolean } {
  const n = prefix.length;
  const total = prefix[n - 1]!;
  const bounds = new Array<number>(parts + 1).fill(n);
  bounds[0] = 0;
  let target = bottleneck;
  const chunk = Math.floor(n / parts);
  let step = chunk;
  for (let p = 1; p < parts; p++) {
    while (step < n && prefix[step]! < target) step += chunk;
    bounds[p] = bisectLeft(prefix, target, step - chunk, Math.min(step, n));
    if (bounds[p] === n) {
      const last = prefix[n - 1]! - prefix[bounds[p - 1]!]!;
      return { bounds, ok: last < bottleneck };
    }
    target = prefix[bounds[p]! - 1]! + bottleneck;
  }
  return { bounds, ok: target >= total };
}

/** Stage boundaries that minimise the heaviest stage's total weight (to within `eps`). */
export function partitionBalanced(weights: readonly number[], parts: number, eps = 1e-3): number[] {
  const n = weights.length;
  if (n <= parts) return partitionUniform(n, parts);
  const prefix = prefixSum(weights);
  const total = prefix[n - 1]!;
  let lower = total / parts;
  let upper = total;
  while (upper > lower + eps) {
    const mid = lower + (upper - lower) / 2;
    if (probe(prefix, parts, mid).ok) upper = mid;
    else lower = mid + eps;
  }
  return probe(prefix, parts, upper).bounds;
}
