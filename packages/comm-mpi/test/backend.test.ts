// The mpi backend under real mpirun jobs: every op x dtype on 1-4 ranks equal to core's cpu
// backend bit for bit, async Work, subgroups, the per-op timeout and a killed rank.
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

import { describeRun, mpiMissing, mpiRun } from './mpirun.js';

const missing = mpiMissing();
if (missing) console.log(`[comm-mpi] skipping the mpirun tests: ${missing}`);
const OPS = new URL('./workers/ops.ts', import.meta.url);
const FAULTS = new URL('./workers/faults.ts', import.meta.url);
const NO_MPIRUN = new URL('./workers/no-mpirun.ts', import.meta.url);

describe.skipIf(missing !== null)('mpi backend under mpirun', () => {
  it.each([1, 2, 3, 4])('every op x dtype on %i rank(s) equals the cpu backend', async (n) => {
    const r = await mpiRun(n, OPS, { timeoutMs: 90_000 });
    expect(r.timedOut, describeRun(r)).toBe(false);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.reports.size, describeRun(r)).toBe(n);
    for (const [rank, rep] of r.reports) {
      expect(rep.mismatches, `rank ${rank}`).toEqual([]);
      // Outputs compared: 71 op x dtype cases (reduce ops x {allReduce, reduceScatter} + 7 other forms),
      // 3 async allReduces and 2 subgroup ops; one rank has no send/recv ring and no subgroup.
      expect(rep.checked).toBe(n === 1 ? 69 : 76);
      expect(rep.subgroup).toBe(n === 1 ? 'skipped' : `group[${Array.from({ length: n }, (_, q) => n - 1 - q).join(',')}] rank ${n - 1 - rank} of ${n}`);
    }
  }, 120_000);

  it('a rank that never joins times the op out on the others, naming op, group and the missing rank', async () => {
    const r = await mpiRun(3, FAULTS, { args: ['timeout'], timeoutMs: 60_000 });
    expect(r.timedOut, describeRun(r)).toBe(false);
    for (const rank of [0, 1]) {
      const rep = r.reports.get(rank);
      expect(rep, describeRun(r)).toBeDefined();
      expect(rep!.timeout).toBe(true);
      expect(rep!.error).toMatch(new RegExp(`allReduce on group 'world' \\(mpi, seq 1, rank ${rank} of 3\\): timed out after 1500 ms; rank\\(s\\) 2 did not arrive`));
      expect(rep!.ms as number).toBeLessThan(10_000);
    }
  }, 90_000);

  it('a rank killed mid-allReduce fails the others with DSCommError, no hang', async () => {
    // --enable-recovery: mpirun keeps the survivors alive so that they report (by default it kills them).
    const r = await mpiRun(3, FAULTS, { args: ['kill'], timeoutMs: 60_000, mpirunArgs: ['--enable-recovery'] });
    expect(r.timedOut, describeRun(r)).toBe(false);
    for (const rank of [0, 1]) {
      const rep = r.reports.get(rank);
      expect(rep, describeRun(r)).toBeDefined();
      expect(rep!.comm).toBe(true);
      expect(rep!.timeout).toBe(false);
      expect(rep!.error).toMatch(/allReduce on group 'world' \(mpi, seq \d+, rank \d of 3\) failed: rank \d \(pid \d+\) exited while the op was in flight/);
      expect(rep!.ms as number).toBeLessThan(10_000);
    }
  }, 90_000);

  it('ranks started without mpirun fail at join, saying MPI sees a world of one and how to start the job', async () => {
    const w = await withWorld(2, NO_MPIRUN, { timeoutMs: 60_000 });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) {
      const rep = lastJson<{ config: boolean; error: string }>(r.stdout);
      expect(rep.config, describeWorld(w)).toBe(true);
      expect(rep.error).toBe(
        `comm backend 'mpi': this job has WORLD_SIZE=2 and RANK=${r.rank} but MPI_COMM_WORLD has 1 process(es) with this one at rank 0; ` +
          'start the job with mpirun or `ds --launcher openmpi` (which set both alike), or use comm_backend_name "cpu"',
      );
    }
  }, 90_000);
});
