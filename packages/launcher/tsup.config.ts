import { defineConfig } from 'tsup';

// Three entries: the library door, the `ds` bin, and the per-node agent that `ds` starts on each
// remote node (over ssh/pdsh) or under mpirun/srun. Only the library gets declarations.
export default defineConfig({
  entry: { index: 'src/index.ts', 'bin/ds': 'src/bin/ds.ts', 'bin/agent': 'src/bin/agent.ts' },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts' } },
  target: 'node20',
  platform: 'node',
  clean: true,
  sourcemap: true,
  splitting: false,
});
