// The worker, the watchdog and the JavaScript side of the nccl backend, run on this GPU-less machine
// against a fake CUDA runtime + NCCL (test/fake/fake-cuda-nccl.cc, a world of one whose "GPU" is host
// memory, with injected hangs and errors). What it cannot show is NCCL's and the GPU's own behaviour:
// that is test/gpu/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { tsNodeArgs } from '@ds-internal/test-kit';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'comm-nccl-fake-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fake = join(dir, 'libfake-cuda-nccl.so');
const cxx = process.env.CXX || 'g++';
const built = spawnSync(cxx, ['-std=c++17', '-shared', '-fPIC', '-O1', '-o', fake, join(import.meta.dirname, 'fake', 'fake-cuda-nccl.cc')], { encoding: 'utf8' });
const why = built.error ? `${cxx} is not available (${built.error.message})` : built.status !== 0 ? `the fake library did not build:\n${built.stderr}` : null;
if (why) console.log(`[comm-nccl] skipping the fake-library tests: ${why}`);
const WORKER = join(import.meta.dirname, 'workers', 'fake-world.ts');

function run(scenario: string, faults: Record<string, string> = {}): { code: number | null; report: Record<string, any>; log: string[]; ms: number; out: string } {
  const log = join(dir, `${scenario}.log`);
  const started = Date.now();
  const r = spawnSync(process.execPath, tsNodeArgs(WORKER, [fake, scenario]), { env: { ...process.env, ...faults, FAKE_NCCL_LOG: log }, encoding: 'utf8', timeout: 60_000 });
  const out = `${r.stdout}${r.stderr}`;
  const line = r.stdout.split('\n').filter((l) => l.startsWith('{')).pop();
  return { code: r.status, report: line ? JSON.parse(line) : {}, log: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [], ms: Date.now() - started, out };
}

describe.skipIf(why !== null)('nccl backend on a fake CUDA + NCCL', () => {
  it('every op and dtype, in-place forms, async handles, observers; destroy finalizes the communicator', () => {
    const r = run('ops');
    expect(r.code, r.out).toBe(0);
    const rep = r.report;
    expect(rep.mismatches).toEqual([]);
    expect(rep.checked).toBe(30);
    expect(rep.completed).toBe(true);
    expect(rep.seqs).toEqual([31, 32, 33]);
    expect(rep.errors.hostArray).toMatchObject({ name: 'DSShapeError', shape: true, message: expect.stringMatching(/^allReduce: buffer is a host Float32Array, but the nccl backend moves GPU memory only; put the tensor on 'cuda'/) });
    expect(rep.errors.foreign.message).toBe(
      "allReduce on group 'world' (nccl, seq 34, rank 0 of 1, global ranks [0]): the input is memory CUDA does not know (ordinary host memory), not memory of CUDA device 0; the buffer must be a DeviceArray allocated on this process's GPU (CUDA device 0)",
    );
    expect(rep.errors.registered).toMatchObject({ unsupported: true, message: expect.stringMatching(/allocRegistered\(64\) on group 'world': the nccl backend moves GPU memory only/) });
    expect(rep.afterRejected).toBe(34);
    expect(rep.observed).toEqual({ count: 34, latencyMs: 0.25, ok: true, ops: ['allReduce', 'reduceScatter', 'allGather', 'broadcast', 'allToAll', 'barrier'] });
    expect(r.log).toEqual(['init', 'finalize', 'destroy']);
  }, 90_000);

  it.each(['hang', 'hang-sync'])('%s: a kernel that never finishes times out naming op, group, seq and ranks; the communicator is aborted; later ops fail saying why', (scenario) => {
    const r = run(scenario, { FAKE_NCCL_HANG_AT: '2' });
    expect(r.code, r.out).toBe(0);
    expect(r.report.timedOut).toMatchObject({ name: 'DSTimeoutError', timeout: true });
    expect(r.report.timedOut.message).toBe(
      "allReduce on group 'world' (nccl, seq 1, rank 0 of 1, global ranks [0]): timed out after 400 ms: its NCCL kernel had not finished (a peer never joined this op, or the network or a GPU stalled); the communicator was aborted (ncclCommAbort); raise DS_COMM_TIMEOUT if the peers are only slow",
    );
    expect(r.report.ms).toBeGreaterThanOrEqual(390);
    expect(r.report.ms).toBeLessThan(5000);
    expect(r.report.after).toMatchObject({ name: 'DSCommError', timeout: false });
    expect(r.report.after.message).toBe(
      "allReduce on group 'world' (nccl, seq 2, rank 0 of 1, global ranks [0]) failed: the group's communicator was aborted because allReduce seq 1 timed out; this group can no longer be used (make a new one with newGroup, or restart the job)",
    );
    expect(r.log).toEqual(['init', 'abort']);
  }, 90_000);

  it("an NCCL error fails the op with NCCL's text and aborts the communicator", () => {
    const r = run('async', { FAKE_NCCL_ASYNC_AT: '1' });
    expect(r.code, r.out).toBe(0);
    expect(r.report.failed.message).toBe(
      "allReduce on group 'world' (nccl, seq 0, rank 0 of 1, global ranks [0]) failed: NCCL refused it: remote process exited or there was a network error (ncclResult 6)",
    );
    expect(r.log).toEqual(['init', 'abort']);
  }, 90_000);

  it('a process exiting with an op stuck on the GPU aborts the communicator and exits at once with its own code', () => {
    const r = run('exit', { FAKE_NCCL_HANG_AT: '1' });
    expect(r.code, r.out).toBe(3);
    expect(r.log).toEqual(['init', 'abort']);
    expect(r.ms).toBeLessThan(30_000);
  }, 90_000);
});
