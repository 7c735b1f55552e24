// The built `ds` bin on real processes: exit codes, failure reports, signals, logs, pid files.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, cleanupTempDirs, requireBuiltBin, runDsBin, tempDir, waitFor, writtenPids } from './helpers.js';

afterAll(cleanupTempDirs);

beforeAll(requireBuiltBin);

const rankEnvs = (stdout: string) =>
  stdout.split('\n').filter((l) => l.startsWith('[rank ')).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')) as { env: Record<string, string>; argv: string[] });

describe('ds (local)', () => {
  it('starts --num_gpus ranks on a cpu host, prefixes lines with the rank, passes --local_rank and user args', async () => {
    const r = await runDsBin(['--num_gpus', '2', '--master_port', '29611', 'env-dump.mjs', '--deepspeed', 'ds_config.json']);
    expect(r.code).toBe(0);
    const dumps = rankEnvs(r.stdout).sort((a, b) => Number(a.env.RANK) - Number(b.env.RANK));
    expect(dumps.map((d) => [d.env.RANK, d.env.WORLD_SIZE, d.env.MASTER_ADDR, d.env.MASTER_PORT])).toEqual([
      ['0', '2', '127.0.0.1', '29611'], ['1', '2', '127.0.0.1', '29611'],
    ]);
    expect(dumps.map((d) => d.argv)).toEqual([['--local_rank=0', '--deepspeed', 'ds_config.json'], ['--local_rank=1', '--deepspeed', 'ds_config.json']]);
  });

  it('a rank that exits 3 makes ds exit 3 within 2 s, names the rank with its last lines, and leaves no process', async () => {
    const dir = tempDir();
    const r = await runDsBin(['--num_gpus', '4', 'ranks.mjs'], { env: { PID_DIR: dir, FAIL_RANK: '2', FAIL_CODE: '3', FAIL_DELAY_MS: '500', SPAWN_CHILD: '1' } });
    const exitedAt = Date.now();
    expect(r.code).toBe(3);
    const failedAt = Number(readFileSync(join(dir, 'failed_at'), 'utf8'));
    expect(exitedAt - failedAt).toBeLessThan(2000);
    expect(r.stderr).toMatch(/ds: rank 2 \(pid \d+ on localhost\) exited with code 3; stopped the other 3 rank\(s\)\./);
    expect(r.stderr).toContain('  | rank 2 failing on purpose');
    const pids = writtenPids(dir);
    expect(pids).toHaveLength(8);
    expect(pids.filter(alive)).toEqual([]);
  });

  it('SIGINT (Ctrl-C) to ds ends every rank and ds exits 130', async () => {
    const dir = tempDir();
    let dsPid = 0;
    const run = runDsBin(['--num_gpus', '3', 'ranks.mjs'], { env: { PID_DIR: dir, SPAWN_CHILD: '1' }, onStart: (p) => (dsPid = p) });
    await waitFor(() => writtenPids(dir).length === 6, 20_000, '3 ranks and their children');
    process.kill(dsPid, 'SIGINT');
    const r = await run;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('ds: received SIGINT; stopped all 3 rank(s).');
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('a rank that ignores SIGTERM is SIGKILLed after --term_grace_s', async () => {
    const dir = tempDir();
    const r = await runDsBin(['--term_grace_s', '0.5', '--num_gpus', '2', 'ranks.mjs'], {
      env: { PID_DIR: dir, FAIL_RANK: '0', FAIL_CODE: '7', IGNORE_TERM: '1' },
    });
    expect(r.code).toBe(7);
    expect(r.stdout).toContain('[rank 1] rank 1 ignores SIGTERM');
    expect(writtenPids(dir).filter(alive)).toEqual([]);
  });

  it('if ds itself is SIGKILLed, its ranks notice and end (no orphans)', async () => {
    const dir = tempDir();
    let dsPid = 0;
    const run = runDsBin(['--num_gpus', '2', 'ranks.mjs'], { env: { PID_DIR: dir, SPAWN_CHILD: '1' }, onStart: (p) => (dsPid = p) });
    await waitFor(() => writtenPids(dir).length === 4, 20_000, '2 ranks and their children');
    process.kill(dsPid, 'SIGKILL');
    await run;
    await waitFor(() => writtenPids(dir).filter(alive).length === 0, 5000, 'the orphaned ranks to end');
  });

  it('--enable_each_rank_log writes <dir>/<time>_rank<R>.log and the failure report reads it', async () => {
    const dir = tempDir();
    const logs = join(dir, 'logs');
    const r = await runDsBin(['--num_gpus', '2', '--enable_each_rank_log', logs, 'ranks.mjs'], { env: { FAIL_RANK: '1', FAIL_CODE: '4' } });
    expect(r.code).toBe(4);
    const files = readdirSync(logs).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^\d{14}_rank0\.log$/);
    expect(readFileSync(join(logs, files[1]!), 'utf8')).toContain('rank 1 failing on purpose');
    expect(r.stdout).not.toContain('[rank');
    expect(r.stderr).toContain('  | rank 1 failing on purpose');
    writeFileSync(join(dir, 'afile'), '');
    const bad = await runDsBin(['--enable_each_rank_log', join(dir, 'afile'), 'exit-ok.mjs']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is a file; it must be a directory/);
  });

  it('--save_pid writes /tmp/<ds pid>.deepspeed while running and removes it after', async () => {
    const dir = tempDir();
    let dsPid = 0;
    const run = runDsBin(['--save_pid', 'ranks.mjs'], { env: { PID_DIR: dir }, onStart: (p) => (dsPid = p) });
    await waitFor(() => writtenPids(dir).length === 1, 20_000, 'the rank');
    expect(readFileSync(`/tmp/${dsPid}.deepspeed`, 'utf8')).toBe(String(dsPid));
    process.kill(dsPid, 'SIGTERM');
    const r = await run;
    expect(r.code).toBe(143);
    expect(existsSync(`/tmp/${dsPid}.deepspeed`)).toBe(false);
  });

  it('runs a .ts script, --no_local_rank, and --module <package>[:bin]', async () => {
    const ts = await runDsBin(['--num_gpus', '2', '--no_local_rank', 'hello.ts', 'q']);
    expect(ts.code).toBe(0);
    expect(ts.stdout.split('\n').filter(Boolean).sort()).toEqual(['[rank 0] ts rank 0/2 args=q', '[rank 1] ts rank 1/2 args=q']);

    const proj = tempDir();
    const pkg = join(proj, 'node_modules', 'fake-trainer');
    mkdirSync(join(pkg, 'bin'), { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'fake-trainer', bin: { 'fake-trainer': 'bin/train.mjs', other: 'bin/other.mjs' } }));
    writeFileSync(join(pkg, 'bin', 'train.mjs'), 'console.log(`train ${process.env.RANK} ${process.argv.slice(2).join(" ")}`);\n');
    writeFileSync(join(pkg, 'bin', 'other.mjs'), 'console.log(`other ${process.env.RANK}`);\n');
    const mod = await runDsBin(['--module', 'fake-trainer', 'x'], { cwd: proj });
    expect(mod.stdout.trim()).toBe('[rank 0] train 0 --local_rank=0 x');
    const other = await runDsBin(['--module', 'fake-trainer:other'], { cwd: proj });
    expect(other.stdout.trim()).toBe('[rank 0] other 0');
    const missing = await runDsBin(['--module', 'fake-trainer:nope'], { cwd: proj });
    expect(missing.stderr).toMatch(/has no bin 'nope'; its bins are fake-trainer, other/);
  });

  it('a single-host hostfile with --include runs locally on the chosen slots', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'hostfile'), '# one box\nlocalhost slots=4\n');
    const r = await runDsBin(['-H', join(dir, 'hostfile'), '-i', 'localhost:1,3', '--master_addr', '127.0.0.1', 'env-dump.mjs']);
    expect(r.code).toBe(0);
    expect(rankEnvs(r.stdout).map((d) => d.env.RANK).sort()).toEqual(['0', '1']);
  });

  it('reports launch errors in one line and exits 1 (2 for unsupported features)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'hostfile'), 'worker-0 slots=2\nworker-0 slots=2\n');
    const dup = await runDsBin(['-H', join(dir, 'hostfile'), 'exit-ok.mjs']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/^ds: Hostfile .* lists host 'worker-0' a second time/);
    const typo = await runDsBin(['--num_gpus', '1', 'missing.ts']);
    expect(typo.stderr).toMatch(/Script 'missing.ts' not found/);
    const elastic = await runDsBin(['--elastic_training', 'exit-ok.mjs']);
    expect(elastic.code).toBe(2);
    const help = await runDsBin(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--bind_cores_to_rank');
  });
});
