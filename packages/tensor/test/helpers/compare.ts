// Element-by-element comparison with a tolerance relative to each element, floored at a fraction
// of the reference tensor's largest magnitude (so near-zero elements of a large gradient are
// judged on the tensor's scale). Reports the first mismatches and the largest error.
export interface CompareResult {
  maxErr: number;
  mismatches: string[];
}

export function compareArrays(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, floor = 1e-3): CompareResult {
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]!));
  const mismatches: string[] = [];
  let maxErr = 0;
  if (actual.length !== expected.length) return { maxErr: Infinity, mismatches: [`${name}: length ${actual.length} vs ${expected.length}`] };
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const err = Math.abs(actual[i]! - e) / (Math.abs(e) + floor * maxAbs + 1e-30);
    if (!(err <= maxErr)) maxErr = Number.isNaN(err) ? Infinity : Math.max(maxErr, err);
    if (!(err <= tol) && mismatches.length < 5) mismatches.push(`${name}[${i}]: got ${actual[i]}, expected ${e} (rel err ${err.toExponential(2)})`);
  }
  return { maxErr, mismatches };
}
