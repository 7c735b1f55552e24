// Reference batched GEMM: C = alpha * op(A) @ op(B) + beta * C, products summed in f64.

import type { HostGemmArgs as GemmArgs } from '../kernels/table.js';
import { rd, wr } from './access.js';

export function gemm(g: GemmArgs): void {
  const { m, n, k } = g;
  const row = new Float64Array(n);
  for (let p = 0; p < g.batch; p++) {
    const a0 = p * g.strideA;
    const b0 = p * g.strideB;
    const c0 = p * g.strideC;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let l = 0; l < k; l++) {
        // op(A)[i, l]: A is [m, k], or [k, m] when transposed.
        const a = rd(g.dtype, g.a, a0 + (g.transA ? l * m + i : i * k + l));
        for (let j = 0; j < n; j++) row[j]! += a * rd(g.dtype, g.b, b0 + (g.transB ? j * k + l : l * n + j));
      }
      for (let j = 0; j < n; j++) {
        const at = c0 + i * n + j;
        // beta = 0 never reads C, so an uninitialised (or NaN) C is fine.
        const prev = g.beta === 0 ? 0 : g.beta * rd(g.outDtype, g.c, at);
        wr(g.outDtype, g.c, at, g.alpha * row[j]! + prev);
      }
    }
  }
}
