// `ds --launcher openmpi` end to end: two "hosts" (127.0.0.1 and 127.0.0.2, reached through a
// private sshd as the launcher's own ssh tests do) train the ZeRO-2 GPT on the mpi backend, and a
// rank that fails takes the whole job down with the failure reported. Skipped with the reason
// printed where sshd, ssh or Open MPI is missing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePort } from '@ds-internal/test-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mpiMissing } from './mpirun.js';

const SSHD = '/usr/sbin/sshd';
const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const DS_BIN = join(dirname(createRequire(import.meta.url).resolve('@ds/launcher/package.json')), 'bin', 'ds.js');
const skip = mpiMissing() ?? (!existsSync(SSHD) ? `${SSHD} is not installed (apt-get install openssh-server)` : !has('ssh') || !has('ssh-keygen') ? 'the OpenSSH client is not installed' : null);
if (skip) console.log(`[comm-mpi] skipping the ds --launcher openmpi tests: ${skip}`);
const PKG = fileURLToPath(new URL('..', import.meta.url));

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = connect({ host, port });
    s.on('connect', () => (s.destroy(), done(true)));
    s.on('error', () => done(false));
  });
}

/** Live processes whose command line mentions `marker`. */
function processesMentioning(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(marker) && Number(pid) !== process.pid) found.push(`${pid}: ${cmd}`);
    } catch {
      /* exited while we looked */
    }
  }
  return found;
}

interface DsRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

async function runDs(args: string[], env: Record<string, string>, limitMs: number): Promise<DsRun> {
  const started = Date.now();
  const port = await freePort();
  const child = spawn(process.execPath, [DS_BIN, '--master_port', String(port), ...args], { cwd: PKG, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '', stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, limitMs);
  return new Promise<DsRun>((done) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

function reports(stdout: string): Map<number, Record<string, unknown>> {
  const out = new Map<number, Record<string, unknown>>();
  for (const line of stdout.split('\n')) {
    const at = line.indexOf('{');
    if (at < 0) continue;
    try {
      const r = JSON.parse(line.slice(at)) as Record<string, unknown>;
      if (typeof r.rank === 'number') out.set(r.rank, r);
    } catch {
      /* not a report */
    }
  }
  return out;
}

describe.skipIf(skip !== null)('ds --launcher openmpi on two loopback hosts', () => {
  let keys = '';
  let sshd: ChildProcess | undefined;
  let hostfile = '';
  let launcherArgs = '';

  beforeAll(async () => {
    keys = mkdtempSync(join(tmpdir(), 'ds-mpi-ssh-'));
    const port = await freePort();
    for (const f of ['host_key', 'id']) {
      const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, f)]);
      if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
    }
    copyFileSync(join(keys, 'id.pub'), join(keys, 'authorized_keys'));
    writeFileSync(join(keys, 'sshd_config'), [
      'ListenAddress 127.0.0.1', 'ListenAddress 127.0.0.2', `HostKey ${join(keys, 'host_key')}`,
      `AuthorizedKeysFile ${join(keys, 'authorized_keys')}`, `PidFile ${join(keys, 'sshd.pid')}`,
      'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password', 'LogLevel ERROR', '',
    ].join('\n'));
    if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    let log = '';
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(keys, 'sshd_config'), '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    sshd.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
    const deadline = Date.now() + 10_000;
    while (!((await portOpen('127.0.0.1', port)) && (await portOpen('127.0.0.2', port)))) {
      if (sshd.exitCode !== null || Date.now() > deadline) throw new Error(`sshd did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    hostfile = join(keys, 'hostfile');
    writeFileSync(hostfile, '127.0.0.1 slots=1\n127.0.0.2 slots=1\n');
    const ssh = `ssh -p ${port} -i ${join(keys, 'id')} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
    // mpirun starts its daemon on 127.0.0.2 through this ssh; both "hosts" talk over loopback.
    launcherArgs = [process.getuid?.() === 0 ? '--allow-run-as-root' : '', `--mca plm_rsh_agent '${ssh}'`, '--mca oob_tcp_if_include lo', '--mca btl_tcp_if_include lo'].join(' ');
  }, 30_000);

  afterAll(() => {
    sshd?.kill('SIGTERM');
    if (keys) rmSync(keys, { recursive: true, force: true });
  });

  it('trains the ZeRO-2 GPT on the mpi backend, one rank per host', async () => {
    const r = await runDs(['--no_ssh_check', '--launcher', 'openmpi', '--hostfile', hostfile, '--launcher_args', launcherArgs, 'test/workers/gpt.ts'], { DS_COMM_BACKEND: 'mpi', DS_TEST_STEPS: '4' }, 120_000);
    const out = reports(r.stdout);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect([...out.keys()].sort()).toEqual([0, 1]);
    for (const rep of out.values()) {
      expect(rep.backend).toBe('mpi');
      expect(rep.stage).toBe(2);
      const losses = rep.losses as number[];
      expect(losses).toHaveLength(4);
      expect(losses.every(Number.isFinite)).toBe(true);
    }
  }, 150_000);

  it('a rank that exits takes the job down: ds fails naming it, nothing is left running', async () => {
    const marker = `ds-mpi-fail-${process.pid}`;
    const r = await runDs(['--no_ssh_check', '--launcher', 'openmpi', '--hostfile', hostfile, '--launcher_args', launcherArgs, 'test/workers/fail.ts', marker], {}, 90_000);
    expect(r.code, `${r.stdout}\n${r.stderr}`).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(reports(r.stdout).get(0)?.up, r.stdout).toBe(true);
    expect(r.stdout).not.toMatch(/the allReduce completed/);
    expect(`${r.stdout}\n${r.stderr}`).toMatch(/rank 1 .*exited with code 3/);
    expect(r.ms).toBeLessThan(60_000);
    await new Promise((done) => setTimeout(done, 1000));
    expect(processesMentioning(marker)).toEqual([]);
  }, 120_000);
});
