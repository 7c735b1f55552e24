// One rank of the scale test: builds the GPT of DS_TEST_GPT under zeroInit, trains DS_TEST_STEPS
// steps at stage 3 with the ds_config of DS_TEST_CONFIG, and prints what the memory tracker saw on
// the engine's device ('cpu') from before the model was built (peak and live bytes, by category at
// the peak's end), the host bytes of the cpu tier, the model-state bytes ZeRO-3 partitions onto this
// rank, the losses, and the process's real peak resident set (VmHWM from /proc/self/status).
// An error (the DSOutOfMemoryError of a run without offload) is reported with its name and code;
// every rank meets it at the same allocation, so each reports and exits.
import { readFileSync } from 'node:fs';

import { trainSteps } from '@ds-internal/gpt-fixtures';
import { initialize } from '@ds/core';
import { getRuntime, GPT, isDSError, MEMORY_CATEGORIES } from '@ds/tensor';
import { Stage3State, zero, zeroInit } from '@ds/zero';

import { HOST_DEVICE, offloadNvme } from '../../src/index.js';

const config = JSON.parse(process.env.DS_TEST_CONFIG!) as Record<string, unknown>;
const gpt = JSON.parse(process.env.DS_TEST_GPT!) as ConstructorParameters<typeof GPT>[0] & { blockSize: number; vocabSize: number };
const steps = Number(process.env.DS_TEST_STEPS ?? 2);
const world = Number(process.env.WORLD_SIZE ?? 1);
const rank = Number(process.env.RANK ?? 0);
const tracker = getRuntime().tracker;

/** A field of /proc/self/status in bytes (VmHWM: the peak resident set; VmRSS: now). */
function procStatus(field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const base = tracker.liveBytes('cpu');
tracker.resetPeak();
const byCategory = () => Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, tracker.liveBytes('cpu', c)]));
const report: Record<string, unknown> = { rank, limit: tracker.limit ?? null, base };
try {
  const model = zeroInit(() => new GPT(gpt), { config, rank, world });
  report.buildPeak = tracker.peakBytes('cpu') - base;
  const { engine } = await initialize({ model, config, plugins: [zero(), offloadNvme()], log: () => {} });
  report.setupPeak = tracker.peakBytes('cpu') - base;
  // The parameters the stage-3 units hold (the model's own count sees only the released placeholders).
  report.numel = (engine.stateManager as Stage3State).units.reduce((a, u) => a + u.numel, 0);
  const losses = await trainSteps(engine, 0, steps, rank, gpt.blockSize, gpt.vocabSize);
  Object.assign(report, {
    ok: true,
    losses,
    peak: tracker.peakBytes('cpu') - base,
    live: tracker.liveBytes('cpu') - base,
    categories: byCategory(),
    categoryPeaks: Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, tracker.peakBytes('cpu', c)])),
    hostOffload: tracker.liveBytes(HOST_DEVICE, 'offload'),
    reported: engine.stateManager.modelStateBytes(),
  });
  engine.destroy();
  await engine.dist?.destroy();
} catch (err) {
  Object.assign(report, { ok: false, error: `${(err as Error).name}: ${(err as Error).message}`, code: isDSError(err) ? (err as { code?: string }).code : undefined, peak: tracker.peakBytes('cpu') - base });
}
report.vmHWM = procStatus('VmHWM');
report.vmRSS = procStatus('VmRSS');
console.log(JSON.stringify(report));
process.exit(0);
