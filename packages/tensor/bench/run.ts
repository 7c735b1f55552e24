// `pnpm bench` for @ds/tensor: imports every bench/*.bench.ts (each exports
// `run(opts: {smoke}) => Promise<Row[]>`), prints one table and writes bench/results.json.
// `--smoke` runs one tiny iteration of everything (CI); its figures mean nothing and go to
// bench/results.smoke.json. `--only=<prefix>` runs the matching files and updates just their rows.

import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { machineState, table, writeResults, type Row } from '@ds-internal/bench-kit';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

type BenchModule = { run(opts: { smoke: boolean }): Promise<Row[]> };

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const dir = dirname(fileURLToPath(import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith('.bench.ts') && (!only || f.startsWith(only))).sort();
  const rows: Row[] = [];
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as BenchModule;
    const t0 = performance.now();
    const got = await mod.run({ smoke });
    console.error(`${file}: ${got.length} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    rows.push(...got);
  }
  console.log(table(rows));
  console.log(`\n${writeResults(dir, rows, { before, smoke, merge: only !== undefined })}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
