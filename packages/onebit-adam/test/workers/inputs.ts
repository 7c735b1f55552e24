// Deterministic inputs of the compressed all-reduce tests: a different, reproducible vector per
// (rank, iteration, size), with mixed magnitudes and exact zeros (sign(0) is +1).
export function inputFor(rank: number, iter: number, n: number): number[] {
  let state = (rank * 7919 + iter * 104729 + n * 31) >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
  return Array.from({ length: n }, (_, i) => (i % 17 === 5 ? 0 : Math.fround((next() - 0.5) * (1 + 3 * next()))));
}
