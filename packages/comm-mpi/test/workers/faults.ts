// Under mpirun, failure injection. `timeout`: the last rank never joins an allReduce; the others
// must fail with DSTimeoutError naming the op, the group and that rank. `kill`: the last rank
// SIGKILLs itself while the others are inside an allReduce; they must fail with DSCommError fast.
import { DSCommError, DSTimeoutError, initDistributed } from '@ds/core';

import { mpiBackend } from '../../src/index.js';

const mode = process.argv[2];
const dist = await initDistributed({ backend: mpiBackend(), timeoutMs: 20_000 });
const { rank, size } = dist;
const last = size - 1;
const x = new Float32Array(1 << 20).fill(1);
await dist.world.allReduce({ dtype: 'f32', array: x }); // every rank is up
const report = (r: Record<string, unknown>) => console.log(JSON.stringify({ rank, ...r }));

if (rank === last) {
  if (mode === 'kill') {
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 300);
    dist.world.allReduce({ dtype: 'f32', array: new Float32Array(1 << 20) }, { timeoutMs: 20_000 }); // never completes: this rank dies
  }
  await new Promise((r) => setTimeout(r, 4000)); // timeout mode: sits the op out, then leaves
  report({ skipped: true });
  process.exit(0);
}
const started = Date.now();
try {
  if (mode === 'kill') {
    // Keep issuing allReduces until the dead peer fails one.
    for (;;) await dist.world.allReduce({ dtype: 'f32', array: x }, { timeoutMs: 20_000 });
  } else {
    await dist.world.allReduce({ dtype: 'f32', array: x }, { timeoutMs: 1500 });
  }
  report({ error: null });
} catch (err) {
  report({ error: (err as Error).message, timeout: err instanceof DSTimeoutError, comm: err instanceof DSCommError, ms: Date.now() - started });
}
process.exit(1);
