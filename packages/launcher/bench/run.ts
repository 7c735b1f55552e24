// `ds` start-up overhead: from starting the launcher to every rank running user code, against
// starting the same number of plain `node` processes directly (the anchor), in the same run.
// Each rank prints the wall-clock time its code starts; the figure is the latest rank's time
// minus the moment the command was spawned. Median of ITER runs, launcher and anchor alternating;
// `--smoke` runs one.
//
//   pnpm --filter @ds/launcher bench [-- --smoke]
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

import { machineState, median, table, writeResults, type Row } from '@ds-internal/bench-kit';

import { launch } from '../src/api.js';

// The machine before anything is measured: a run on a busy machine is written as noisy, not as results.
const before = machineState();

const HERE = dirname(fileURLToPath(import.meta.url));
const DS = join(HERE, '..', 'dist', 'bin', 'ds.js');
const smoke = process.argv.includes('--smoke');
const ITER = smoke ? 1 : 7;
const now = () => performance.timeOrigin + performance.now();
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

function stamps(text: string): number[] {
  return [...text.matchAll(/STAMP (\d+(?:\.\d+)?)/g)].map((m) => Number(m[1]));
}

/** Spawns each argv at once; resolves to (latest STAMP printed) - (spawn time). */
function timeProcesses(argvs: string[][], expected: number): Promise<number> {
  const t0 = now();
  return Promise.all(argvs.map((argv) => new Promise<number[]>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: HERE, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stamps(out)) : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  }))).then((all) => {
    const s = all.flat();
    if (s.length !== expected) throw new Error(`expected ${expected} stamps, got ${s.length}`);
    return Math.max(...s) - t0;
  });
}

/** Medians of `fn` and its anchor, measured in alternation so that load drifts hit both alike. */
async function measurePair(fn: () => Promise<number>, anchor: () => Promise<number>): Promise<[number, number]> {
  if (!smoke) {
    await fn(); // warm the file cache
    await anchor();
  }
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < ITER; i++) {
    xs.push(await fn());
    ys.push(await anchor());
  }
  return [median(xs), median(ys)];
}

async function main(): Promise<void> {
  if (!existsSync(DS)) throw new Error(`${DS} is missing: run 'pnpm --filter @ds/launcher build' first.`);
  const rows: Row[] = [];
  const node = process.execPath;
  const cases: { metric: string; ranks: number; script: string; anchorArgv: string[] }[] = [
    { metric: 'launcher_startup_ms_1r', ranks: 1, script: 'stamp.mjs', anchorArgv: [node, 'stamp.mjs'] },
    { metric: 'launcher_startup_ms_2r', ranks: 2, script: 'stamp.mjs', anchorArgv: [node, 'stamp.mjs'] },
    { metric: 'launcher_startup_ms_4r', ranks: 4, script: 'stamp.mjs', anchorArgv: [node, 'stamp.mjs'] },
    { metric: 'launcher_startup_ms_ts_1r', ranks: 1, script: 'stamp.ts', anchorArgv: [node, '--import', TSX, 'stamp.ts'] },
  ];
  for (const c of cases) {
    const [value, anchorValue] = await measurePair(
      () => timeProcesses([[node, DS, '--num_gpus', String(c.ranks), '--no_local_rank', c.script]], c.ranks),
      () => timeProcesses(Array.from({ length: c.ranks }, () => c.anchorArgv), c.ranks),
    );
    rows.push({
      metric: c.metric, value, unit: 'ms', anchor: `${c.ranks} plain '${c.anchorArgv.slice(1).join(' ')}' process(es) started directly`,
      anchorValue, ratio: anchorValue / value,
      config: { ranks: c.ranks, script: c.script, iterations: ITER, statistic: 'median', cores: availableParallelism(), node: process.version },
    });
  }
  // The programmatic API, as multi-process tests use it.
  const [api, apiAnchor] = await measurePair(
    async () => {
      const t0 = now();
      const r = await launch({ script: join(HERE, 'stamp.mjs'), nprocs: 2, timeoutMs: 30_000 });
      return Math.max(...r.ranks.flatMap((x) => stamps(x.output))) - t0;
    },
    () => timeProcesses([[node, 'stamp.mjs'], [node, 'stamp.mjs']], 2),
  );
  rows.push({
    metric: 'launch_api_startup_ms_2r', value: api, unit: 'ms', anchor: "2 plain 'stamp.mjs' processes started directly",
    anchorValue: apiAnchor, ratio: apiAnchor / api,
    config: { ranks: 2, script: 'stamp.mjs', iterations: ITER, statistic: 'median', cores: availableParallelism(), node: process.version },
  });

  console.log('ds start-up: launcher start -> all ranks running user code (ratio = anchor / value, above 1 is better)');
  console.log(table(rows));
  console.log(writeResults(HERE, rows, { before, smoke }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
