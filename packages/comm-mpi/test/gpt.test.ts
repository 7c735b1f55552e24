// The tiny GPT under ZeRO stage 2 on the mpi backend (mpirun) follows the cpu backend's losses
// (withWorld) step by step, within 1e-3 relative.
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { describe, expect, it } from 'vitest';

import { describeRun, mpiMissing, mpiRun } from './mpirun.js';

const missing = mpiMissing();
const GPT_WORKER = new URL('./workers/gpt.ts', import.meta.url);

interface Report {
  rank: number;
  backend: string;
  stage: number;
  losses: number[];
}

/** The global per-step loss: the mean over ranks of each rank's loss. */
function curve(reports: Report[]): number[] {
  return reports[0]!.losses.map((_, s) => reports.reduce((a, r) => a + r.losses[s]!, 0) / reports.length);
}

describe.skipIf(missing !== null)('ZeRO-2 GPT on mpi', () => {
  it('follows the cpu backend losses (1e-3 relative per step) on 2 ranks', async () => {
    const env = { DS_TEST_STEPS: '6' };
    const onMpi = await mpiRun(2, GPT_WORKER, { timeoutMs: 90_000, env: { ...env, DS_COMM_BACKEND: 'mpi' } });
    expect(onMpi.code, describeRun(onMpi)).toBe(0);
    const onCpu = await withWorld(2, GPT_WORKER, { timeoutMs: 90_000, env: { ...env, DS_COMM_BACKEND: 'cpu' } });
    expect(onCpu.ranks.map((r) => r.code), describeWorld(onCpu)).toEqual([0, 0]);
    const mpiReports = [0, 1].map((r) => onMpi.reports.get(r) as unknown as Report);
    const cpuReports = onCpu.ranks.map((r) => lastJson<Report>(r.stdout));
    expect(mpiReports.map((r) => [r.backend, r.stage])).toEqual([['mpi', 2], ['mpi', 2]]);
    expect(cpuReports.map((r) => [r.backend, r.stage])).toEqual([['cpu', 2], ['cpu', 2]]);
    const got = curve(mpiReports), want = curve(cpuReports);
    const rel = got.map((g, s) => Math.abs(g - want[s]!) / Math.abs(want[s]!));
    console.log(`[comm-mpi] ZeRO-2 GPT, worst relative loss difference mpi vs cpu over ${rel.length} steps: ${Math.max(...rel).toExponential(2)}`);
    expect(Math.max(...rel), `mpi ${got.join(', ')}\ncpu ${want.join(', ')}`).toBeLessThan(1e-3);
    expect(got[5]!).toBeLessThan(got[0]!);
  }, 180_000);
});
