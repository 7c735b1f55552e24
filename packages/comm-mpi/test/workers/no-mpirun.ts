// Started by withWorld (RANK/WORLD_SIZE set, no mpirun): each process is an MPI world of one, and
// initialize() on the mpi backend must fail on every rank at once, saying why and what to do.
import { TINY_GPT, tinyConfig } from '@ds-internal/gpt-fixtures';
import { DSConfigError, initialize } from '@ds/core';
import { GPT } from '@ds/tensor';

import { mpi } from '../../src/index.js';

try {
  await initialize({ model: new GPT(TINY_GPT), config: tinyConfig(2), plugins: [mpi()], commBackend: 'mpi', log: () => {} });
  console.log(JSON.stringify({ joined: true }));
} catch (err) {
  console.log(JSON.stringify({ config: err instanceof DSConfigError, error: (err as Error).message }));
}
