// Multi-node on one machine: a private sshd on 127.0.0.1 and 127.0.0.2 (a generated host key and
// user key, its own config and port), and `ds` running two "nodes" through it with the ssh launcher.
// Skipped, with the reason printed, where sshd or the ssh client tools are missing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/api.js';
import { alive, cleanupTempDirs, FIXTURES, requireBuiltBin, runDsBin, tempDir, waitFor } from './helpers.js';

const SSHD = '/usr/sbin/sshd';
const hasTool = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const skipReason: string | null = !existsSync(SSHD)
  ? `${SSHD} is not installed (apt-get install openssh-server)`
  : !hasTool('ssh') || !hasTool('ssh-keygen')
    ? 'the OpenSSH client (ssh, ssh-keygen) is not installed'
    : null;
if (skipReason) console.warn(`[launcher ssh tests] skipped: ${skipReason}`);

/** Processes whose command line mentions `marker` (live ones only). */
function processesMentioning(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(marker) && Number(pid) !== process.pid) found.push(`${pid}: ${cmd}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

describe.skipIf(skipReason !== null)('ds over ssh: two nodes on loopback', () => {
  let dir = '';
  let keys = '';
  let port = 0;
  let sshd: ChildProcess | undefined;
  let sshdLog = '';
  let launcherArgs = '';

  beforeAll(async () => {
    requireBuiltBin();
    dir = tempDir('ds-ssh-run-');
    keys = tempDir('ds-ssh-keys-');
    port = await freePort();
    const keygen = (file: string) => {
      const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, file)]);
      if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
    };
    keygen('host_key');
    keygen('id');
    copyFileSync(join(keys, 'id.pub'), join(keys, 'authorized_keys'));
    writeFileSync(join(keys, 'sshd_config'), [
      'ListenAddress 127.0.0.1', 'ListenAddress 127.0.0.2', `HostKey ${join(keys, 'host_key')}`,
      `AuthorizedKeysFile ${join(keys, 'authorized_keys')}`, `PidFile ${join(keys, 'sshd.pid')}`,
      'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password', 'LogLevel ERROR', '',
    ].join('\n'));
    // sshd started as root wants its privilege-separation directory.
    if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(keys, 'sshd_config'), '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    sshd.stderr!.setEncoding('utf8').on('data', (d: string) => (sshdLog += d));
    const deadline = Date.now() + 10_000;
    while (!((await portOpen('127.0.0.1', port)) && (await portOpen('127.0.0.2', port)))) {
      if (sshd.exitCode !== null || Date.now() > deadline) throw new Error(`sshd did not start: ${sshdLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    launcherArgs = [
      '-i', join(keys, 'id'), '-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(keys, 'known_hosts')}`,
      '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
    ].join(' ');
    writeFileSync(join(dir, 'hostfile'), '# two nodes, one machine\n127.0.0.1 slots=2\n127.0.0.2 slots=1\n');
    // A copy of the rank script under `dir`, so every process of a run has `dir` in its command line.
    copyFileSync(join(FIXTURES, 'ranks.mjs'), join(dir, 'ranks.mjs'));
    copyFileSync(join(FIXTURES, 'env-dump.mjs'), join(dir, 'env-dump.mjs'));
  }, 30_000);

  afterAll(() => {
    sshd?.kill('SIGTERM');
    const left = processesMentioning(dir);
    for (const p of left) process.kill(Number(p.split(':')[0]), 'SIGKILL');
    cleanupTempDirs();
    if (left.length > 0) throw new Error(`processes of the ssh tests were left running: ${left.join('; ')}`);
  });

  const ds = (extra: string[], env: Record<string, string> = {}, onStart?: (pid: number) => void) =>
    runDsBin(['-H', join(dir, 'hostfile'), '--ssh_port', String(port), '--launcher_args', launcherArgs, '--master_addr', '127.0.0.1', '--master_port', '29677', ...extra], {
      cwd: dir, env, onStart, limitMs: 40_000,
    });

  it('starts ranks 0-1 on node 0 and rank 2 on node 1, with .deepspeed_env exported', async () => {
    writeFileSync(join(dir, 'env-a'), 'DS_TEST_EXTRA=from-env-file\n');
    const r = await ds(['--no_local_rank', 'env-dump.mjs'], { DS_ENV_FILE: join(dir, 'env-a') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const dumps = r.stdout.split('\n').filter((l) => l.startsWith('[rank '))
      .map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')) as { env: Record<string, string>; cwd: string })
      .sort((a, b) => Number(a.env.RANK) - Number(b.env.RANK));
    expect(dumps.map((d) => [d.env.RANK, d.env.LOCAL_RANK, d.env.CROSS_RANK, d.env.CROSS_SIZE, d.env.WORLD_SIZE, d.env.LOCAL_SIZE])).toEqual([
      ['0', '0', '0', '2', '3', '2'], ['1', '1', '0', '2', '3', '2'], ['2', '0', '1', '2', '3', '1'],
    ]);
    expect(dumps.every((d) => d.env.MASTER_ADDR === '127.0.0.1' && d.env.MASTER_PORT === '29677' && d.env.DS_TEST_EXTRA === 'from-env-file')).toBe(true);
    expect(dumps.every((d) => d.cwd === dir)).toBe(true);
  });

  it('a rank failing on node 1 stops node 0 too; ds exits with its code and nothing is left', async () => {
    const pids = join(dir, 'pids-fail');
    mkdirSync(pids);
    writeFileSync(join(dir, 'env-b'), `PID_DIR=${pids}\nFAIL_RANK=2\nFAIL_CODE=3\nFAIL_AFTER_PIDS=6\nSPAWN_CHILD=1\n`);
    const r = await ds(['ranks.mjs'], { DS_ENV_FILE: join(dir, 'env-b') });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ds: rank 2 \(on \S+\) exited with code 3; stopped the other 2 rank\(s\)\./);
    expect(r.stderr).toContain('  | rank 2 failing on purpose');
    expect(readdirSync(pids).filter((f) => f.endsWith('.pid'))).toHaveLength(6);
    await waitFor(() => processesMentioning(dir).length === 0, 5000, `no process of the run left: ${processesMentioning(dir).join('; ')}`);
  });

  it('when a node\'s ssh connection drops, its agent stops its ranks and ds stops the rest', async () => {
    const pids = join(dir, 'pids-drop');
    mkdirSync(pids);
    writeFileSync(join(dir, 'env-c'), `PID_DIR=${pids}\n`);
    const run = ds(['ranks.mjs'], { DS_ENV_FILE: join(dir, 'env-c') });
    await waitFor(() => readdirSync(pids).length === 3, 20_000, 'three ranks up');
    const sshClient = processesMentioning(dir).find((p) => / ssh .*127\.0\.0\.2 /.test(p));
    expect(sshClient).toBeDefined();
    process.kill(Number(sshClient!.split(':')[0]), 'SIGKILL');
    const r = await run;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/node 1 \(127\.0\.0\.2\)/);
    await waitFor(() => processesMentioning(dir).length === 0, 8000, `no process of the run left: ${processesMentioning(dir).join('; ')}`);
  });

  it('Ctrl-C on ds stops every node', async () => {
    const pids = join(dir, 'pids-int');
    mkdirSync(pids);
    writeFileSync(join(dir, 'env-d'), `PID_DIR=${pids}\n`);
    let dsPid = 0;
    const run = ds(['ranks.mjs'], { DS_ENV_FILE: join(dir, 'env-d') }, (p) => (dsPid = p));
    await waitFor(() => readdirSync(pids).length === 3, 20_000, 'three ranks up');
    process.kill(dsPid, 'SIGINT');
    const r = await run;
    expect(r.code).toBe(130);
    await waitFor(() => processesMentioning(dir).length === 0, 8000, `no process of the run left: ${processesMentioning(dir).join('; ')}`);
  });

  it('if ds is SIGKILLed, each agent sees its ssh session end and stops its ranks', async () => {
    const pids = join(dir, 'pids-kill');
    mkdirSync(pids);
    writeFileSync(join(dir, 'env-e'), `PID_DIR=${pids}\nSPAWN_CHILD=1\n`);
    let dsPid = 0;
    const run = ds(['ranks.mjs'], { DS_ENV_FILE: join(dir, 'env-e') }, (p) => (dsPid = p));
    await waitFor(() => readdirSync(pids).length === 6, 20_000, 'three ranks and their children up');
    process.kill(dsPid, 'SIGKILL');
    await run;
    await waitFor(() => processesMentioning(dir).length === 0, 8000, `no process of the run left: ${processesMentioning(dir).join('; ')}`);
    const left = readdirSync(pids).map((f) => Number(readFileSync(join(pids, f), 'utf8'))).filter(alive);
    expect(left).toEqual([]);
  });

  it('the ssh pre-check fails with DeepSpeed\'s message when a host is unreachable', async () => {
    writeFileSync(join(dir, 'hostfile-bad'), '127.0.0.3 slots=1\n127.0.0.1 slots=1\n');
    const r = await runDsBin(['-H', join(dir, 'hostfile-bad'), '--ssh_port', String(port), '--launcher_args', launcherArgs, 'env-dump.mjs'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Using hostfile at \S+hostfile-bad but host=127\.0\.0\.3 was not reachable via ssh .* please remove \S+ or setup passwordless ssh/);
  });
});
