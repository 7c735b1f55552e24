// `ds` on the scheduler paths, end to end where this machine allows: a stand-in srun (test/fixtures/
// fake-bin/srun) starts the agent in --from_scheduler_env mode; missing backends are named.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, alive, cleanupTempDirs, requireBuiltBin, runDsBin, tempDir, waitFor } from './helpers.js';

afterAll(cleanupTempDirs);

beforeAll(requireBuiltBin);

const FAKE_BIN = join(FIXTURES, 'fake-bin');
const PATH_WITH_FAKE_SRUN = `${FAKE_BIN}:${dirname(process.execPath)}:/usr/bin:/bin`;

function hostfile(text: string): string {
  const path = join(tempDir(), 'hostfile');
  writeFileSync(path, text);
  return path;
}

describe('ds --launcher slurm', () => {
  it('runs srun with the agent, which gives each task RANK/LOCAL_RANK/... from SLURM_* variables', async () => {
    const log = join(tempDir(), 'srun.log');
    const hf = hostfile('node-a slots=2\nnode-b slots=2\n');
    const r = await runDsBin(['-H', hf, '--launcher', 'slurm', '--no_ssh_check', '--master_port', '29688', 'env-dump.mjs'], {
      env: { PATH: PATH_WITH_FAKE_SRUN, FAKE_SRUN_LOG: log, NCCL_DEBUG: 'INFO' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const srunArgv = JSON.parse(readFileSync(log, 'utf8').trim()) as string[];
    expect(srunArgv.slice(0, 6)).toEqual(['-n', '4', '--nodes=2', '--ntasks-per-node=2', '--nodelist=node-a,node-b', '--kill-on-bad-exit=1']);
    expect(srunArgv[6]!.startsWith('--export=ALL,')).toBe(true);
    expect(srunArgv[6]!.split(',')).toContain('NCCL_DEBUG=INFO');
    expect(srunArgv).toContain('--from_scheduler_env');
    const dumps = r.stdout.split('\n').filter((l) => l.startsWith('[rank '))
      .map((l) => (JSON.parse(l.replace(/^\[rank \d+\] /, '')) as { env: Record<string, string> }).env)
      .sort((a, b) => Number(a.RANK) - Number(b.RANK));
    expect(dumps.map((e) => [e.RANK, e.LOCAL_RANK, e.CROSS_RANK, e.WORLD_SIZE, e.LOCAL_SIZE, e.CROSS_SIZE, e.MASTER_ADDR, e.MASTER_PORT])).toEqual([
      ['0', '0', '0', '4', '2', '2', 'node-a', '29688'], ['1', '1', '0', '4', '2', '2', 'node-a', '29688'],
      ['2', '0', '1', '4', '2', '2', 'node-a', '29688'], ['3', '1', '1', '4', '2', '2', 'node-a', '29688'],
    ]);
  });

  it('a failing task\'s code comes back through srun, with the rank named', async () => {
    const hf = hostfile('node-a slots=1\nnode-b slots=1\n');
    const r = await runDsBin(['-H', hf, '--launcher', 'slurm', '--no_ssh_check', '--master_addr', '10.0.0.1', 'ranks.mjs'], {
      env: { PATH: PATH_WITH_FAKE_SRUN, FAIL_RANK: '1', FAIL_CODE: '6' },
      limitMs: 20_000,
    });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/ds: rank 1 \(on \S+\) exited with code 6/);
  });
});

describe('missing backends and bad combinations', () => {
  const hf = () => hostfile('w0 slots=1\nw1 slots=1\n');
  for (const [launcher, tool] of [['slurm', 'srun'], ['openmpi', 'mpirun'], ['pdsh', 'pdsh'], ['ssh', 'ssh']] as const) {
    it(`--launcher ${launcher} without ${tool} on PATH is named`, async () => {
      const r = await runDsBin(['-H', hf(), '--launcher', launcher, 'env-dump.mjs'], { env: { PATH: '/nonexistent' } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`launcher '${launcher}' not installed: '${tool}' is not on PATH`);
    });
  }
});

describe('ds --launcher pdsh', () => {
  const PATH_WITH_FAKE_PDSH = `${FAKE_BIN}:${dirname(process.execPath)}:/usr/bin:/bin`;

  it('runs one pdsh over all hosts; each agent takes its node rank from %n', async () => {
    const log = join(tempDir(), 'pdsh.log');
    const hf = hostfile('h0 slots=1\nh1 slots=2\n');
    const r = await runDsBin(['-H', hf, '--launcher', 'pdsh', '--no_ssh_check', '--master_addr', '127.0.0.1', 'env-dump.mjs'], {
      env: { PATH: PATH_WITH_FAKE_PDSH, FAKE_PDSH_LOG: log },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const pdshArgv = JSON.parse(readFileSync(log, 'utf8').trim()) as string[];
    expect(pdshArgv.slice(0, 5)).toEqual(['-S', '-f', '1024', '-w', 'h0,h1']);
    expect(pdshArgv.at(-1)).toContain('--node_rank=%n');
    const ranks = r.stdout.split('\n').filter((l) => l.startsWith('[rank '))
      .map((l) => (JSON.parse(l.replace(/^\[rank \d+\] /, '')) as { env: Record<string, string> }).env)
      .map((e) => [e.RANK, e.CROSS_RANK, e.LOCAL_RANK]).sort();
    expect(ranks).toEqual([['0', '0', '0'], ['1', '1', '0'], ['2', '1', '1']]);
  });

  it('a failing rank makes ds pkill the other agents of this run, which stop their ranks', async () => {
    const dir = tempDir();
    const hf = hostfile('h0 slots=1\nh1 slots=1\n');
    writeFileSync(join(dir, '.deepspeed_env'), `PID_DIR=${dir}\nFAIL_RANK=0\nFAIL_CODE=9\nFAIL_AFTER_PIDS=2\n`);
    const r = await runDsBin(['-H', hf, '--launcher', 'pdsh', '--no_ssh_check', '--master_addr', '127.0.0.1', join(FIXTURES, 'ranks.mjs')], {
      cwd: dir, env: { PATH: PATH_WITH_FAKE_PDSH }, limitMs: 20_000,
    });
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(/ds: rank 0 \(on \S+\) exited with code 9/);
    const pids = readdirSync(dir).filter((f) => f.endsWith('.pid')).map((f) => Number(readFileSync(join(dir, f), 'utf8')));
    expect(pids).toHaveLength(2);
    await waitFor(() => pids.filter(alive).length === 0, 5000, 'every rank to end');
  });
});
