// Gradient clipping with DeepSpeed's rule. (Averaging across ranks is reduction.ts.)

/**
 * DeepSpeed's clip coefficient: max_norm / (norm + 1e-6) when that is below 1, else 1 (no clipping).
 * `clip` 0 disables clipping.
 */
export function clipCoefficient(norm: number, clip: number): number {
  if (!(clip > 0) || !Number.isFinite(norm)) return 1;
  const c = clip / (norm + 1e-6);
  return c < 1 ? c : 1;
}
