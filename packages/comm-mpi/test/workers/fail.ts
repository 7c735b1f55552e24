// Under `ds --launcher openmpi`: the last rank exits with code 3 while the others sit in an
// allReduce with a long timeout; the launcher must tear every rank down.
import { initDistributed } from '@ds/core';

import { mpiBackend } from '../../src/index.js';

const dist = await initDistributed({ backend: mpiBackend(), timeoutMs: 120_000 });
await dist.world.barrier();
console.log(JSON.stringify({ rank: dist.rank, up: true, pid: process.pid }));
if (dist.rank === dist.size - 1) {
  await new Promise((r) => setTimeout(r, 500));
  process.exit(3);
}
await dist.world.allReduce({ dtype: 'f32', array: new Float32Array(16) }, { timeoutMs: 120_000 });
console.log(JSON.stringify({ rank: dist.rank, unexpected: 'the allReduce completed' }));
