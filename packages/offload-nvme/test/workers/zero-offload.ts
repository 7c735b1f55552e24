// One rank: trains the tiny GPT under each run of DS_TEST_RUNS (a JSON array of
// {config, io}) and prints {"runs": [{losses, masters?, swapFiles, hostOffloadBytes, device}]}: the masters
// (whole, collective) on rank 0 only. `io` picks the nvme tier's engine: native (io_uring where the
// kernel allows), threads (the pread/pwrite pool), reference (the TypeScript twin) or lossy (reads
// return zeros: the control that shows the comparison can fail).
import { readdirSync } from 'node:fs';

import { trainSteps, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { getRuntime, GPT } from '@ds/tensor';
import { zero } from '@ds/zero';

import { AioEngine, HOST_DEVICE, offloadNvme, ReferenceIo, type IoEngine } from '../../src/index.js';

interface RunSpec {
  config: Record<string, unknown>;
  io: 'native' | 'threads' | 'reference' | 'lossy';
}

/** The reference engine, except that every read returns zeros: a tier that loses what it was given. */
function lossyIo(): IoEngine {
  const inner = new ReferenceIo();
  return Object.assign(Object.create(inner) as IoEngine, {
    read: (f: Parameters<IoEngine['read']>[0], dst: Uint8Array, offset: number) => {
      const w = inner.read(f, dst, offset);
      dst.fill(0);
      return w;
    },
  });
}

const runs = JSON.parse(process.env.DS_TEST_RUNS!) as RunSpec[];
const steps = Number(process.env.DS_TEST_STEPS ?? 4);
const engines: Record<RunSpec['io'], (o: object) => IoEngine> = {
  native: (o) => new AioEngine(o),
  threads: (o) => new AioEngine({ ...o, backend: 'threads' }),
  reference: () => new ReferenceIo(),
  lossy: lossyIo,
};

const out = [];
let dist = undefined as Awaited<ReturnType<typeof initialize>>['engine']['dist'] | undefined;
for (const run of runs) {
  const { engine } = await initialize({ model: new GPT(TINY_GPT), config: run.config, plugins: [zero(), offloadNvme({ ioEngine: engines[run.io] })], log: () => {}, ...(dist !== undefined ? { dist } : {}) });
  dist = engine.dist;
  const losses = await trainSteps(engine, 0, steps, engine.rank);
  type Section = { device: string; nvme_path?: string };
  const zc = run.config.zero_optimization as { offload_optimizer?: Section; offload_param?: Section };
  const paths = new Set([zc.offload_optimizer, zc.offload_param].filter((s) => s?.device === 'nvme').map((s) => s!.nvme_path!));
  const swapFiles = [...paths].reduce((n, p) => n + readdirSync(p).filter((f) => f.endsWith('.swap')).length, 0);
  const tracker = getRuntime().tracker;
  const hostOffloadBytes = tracker.liveBytes(HOST_DEVICE, 'offload');
  // What stays on the engine's device between steps: the masters and moments, the 16-bit shard, the gradient shard.
  const device = { optimizerStates: tracker.liveBytes('cpu', 'optimizer_states'), parameters: tracker.liveBytes('cpu', 'parameters'), gradients: tracker.liveBytes('cpu', 'gradients'), gradientShard: engine.stateManager.modelStateBytes().gradients };
  const masters = Object.fromEntries([...(await engine.stateManager.masterWeights())].map(([k, v]) => [k, [...v]]));
  out.push({ losses, swapFiles, hostOffloadBytes, device, ...(engine.rank === 0 ? { masters } : {}) });
  engine.destroy();
}
console.log(JSON.stringify({ runs: out }));
await dist?.destroy();
