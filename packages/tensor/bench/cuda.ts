// The cuda benchmarks from the sources (`npx tsx bench/cuda.ts [outDir]`): runs cudaBench
// (src/devices/cuda-bench.ts, where the measuring lives, so that the GPU machine's check,
// scripts/device-check/run.mjs, runs the same code from dist), prints the table last and writes the
// rows to <outDir>/results.cuda.json (default bench/).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { table } from '@ds-internal/bench-kit';

import { cudaBench } from '../src/devices/cuda-bench.js';

const outDir = process.argv[2] ?? new URL('.', import.meta.url).pathname;
const r = cudaBench({ log: (line) => console.log(line) });
if (!r.available) {
  console.log(`cuda bench skipped: ${r.reason}`);
} else {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.cuda.json'), `${JSON.stringify(r.rows, null, 2)}\n`);
  console.log(`\n${table(r.rows)}`);
}
