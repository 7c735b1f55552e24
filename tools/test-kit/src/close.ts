// expectClose: numbers compared element by element, |actual - expected| <= atol + rtol * |expected|
// (numpy's allclose, torch.testing.assert_close). NaN matches only NaN and an infinity only the same
// infinity. A failure names the first mismatches (index, actual, expected) and the largest absolute
// and relative differences, never a norm alone.
import { AssertionError } from 'node:assert';

export interface Tolerance {
  /** Relative tolerance, scaled by |expected|; default 1e-5. */
  rtol: number;
  /** Absolute tolerance; default 1e-8. */
  atol: number;
}

export interface CloseReport {
  ok: boolean;
  /** Elements outside the tolerance (or the whole length on a length mismatch). */
  mismatches: number;
  /** The first mismatches, as `[index] actual A, expected E (|diff| D)`. */
  first: string[];
  maxAbsDiff: number;
  maxAbsAt: number;
  /** Largest |actual - expected| / |expected| (Infinity where expected is 0 and actual is not). */
  maxRelDiff: number;
  maxRelAt: number;
  /** The whole report as one message (empty when ok). */
  message: string;
}

export const DEFAULT_TOLERANCE: Tolerance = { rtol: 1e-5, atol: 1e-8 };
const SHOWN = 8;

function sameSpecial(a: number, e: number): boolean | undefined {
  if (Number.isNaN(a) || Number.isNaN(e)) return Number.isNaN(a) && Number.isNaN(e);
  if (!Number.isFinite(a) || !Number.isFinite(e)) return a === e;
  return undefined;
}

/** The comparison behind expectClose, for tests that want the numbers rather than a throw. */
export function closeReport(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Partial<Tolerance> = {}, what = 'values'): CloseReport {
  const { rtol, atol } = { ...DEFAULT_TOLERANCE, ...tol };
  const r: CloseReport = { ok: true, mismatches: 0, first: [], maxAbsDiff: 0, maxAbsAt: -1, maxRelDiff: 0, maxRelAt: -1, message: '' };
  if (actual.length !== expected.length) {
    return { ...r, ok: false, mismatches: Math.max(actual.length, expected.length), message: `${what}: ${actual.length} elements, expected ${expected.length}` };
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    let ok = sameSpecial(a, e);
    if (ok === undefined) {
      const d = Math.abs(a - e);
      const rel = e === 0 ? (d === 0 ? 0 : Infinity) : d / Math.abs(e);
      if (d > r.maxAbsDiff) [r.maxAbsDiff, r.maxAbsAt] = [d, i];
      if (rel > r.maxRelDiff) [r.maxRelDiff, r.maxRelAt] = [rel, i];
      ok = d <= atol + rtol * Math.abs(e);
    }
    if (!ok) {
      r.mismatches++;
      if (r.first.length < SHOWN) r.first.push(`[${i}] actual ${a}, expected ${e} (|diff| ${Math.abs(a - e)})`);
    }
  }
  if (r.mismatches === 0) return r;
  r.ok = false;
  r.message = [
    `${what}: ${r.mismatches} of ${expected.length} elements differ by more than atol ${atol} + rtol ${rtol} * |expected|; the first:`,
    ...r.first.map((l) => `  ${l}`),
    `max |diff| ${r.maxAbsDiff} at [${r.maxAbsAt}], max relative diff ${r.maxRelDiff} at [${r.maxRelAt}]`,
  ].join('\n');
  return r;
}

/**
 * Throws an AssertionError unless actual and expected have the same length and every element is
 * within atol + rtol * |expected|. Works in vitest and in worker processes alike (no vitest import).
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Partial<Tolerance> = {}, what?: string): void {
  const r = closeReport(actual, expected, tol, what);
  if (!r.ok) throw new AssertionError({ message: r.message });
}
