// A slow network that tests and benchmarks can make on one Linux host: one network namespace per
// rank, each joined to a hub namespace's bridge by a veth pair, with a `tc` token-bucket (tbf) rate
// limit on both ends of every pair, so each rank's link carries at most `rate` in each direction
// (a switch with ports of that speed, queueing up to 100 ms), and TCP's slow start after idle off
// in each namespace (as clusters tune it), so step-wise bursts measure the link, not the ramp-up. Each rank runs in its own namespace as its own "host": a
// distinct DS_HOST_ID (so the cpu comm backend does not pick shared memory between them), its
// namespace's address as DS_COMM_IFADDR (what it advertises to its peers) and DS_COMM_TRANSPORT=tcp.
//
// Needs root and the `ip` and `tc` commands (iproute2); netnsSupport() says why not otherwise,
// and callers skip with that reason. Everything is torn down when the world ends, when a rank dies
// (the others are killed at once rather than left waiting for a peer that is gone), on the hard
// timeout, and on this process's exit. Addresses exist only inside the namespaces made here.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

import { tsNodeArgs, type RankResult, type WorldResult } from './world.js';

export interface NetnsWorldOptions {
  /** Link rate for tc, e.g. '1gbit' or '100mbit'. */
  rate: string;
  /** Extra environment for every rank (or a function of the rank). */
  env?: Record<string, string> | ((rank: number) => Record<string, string>);
  /** Hard limit for the whole world; default 120 s. */
  timeoutMs?: number;
  args?: string[];
  cwd?: string;
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (existsSync(`${dir}/${cmd}`)) return `${dir}/${cmd}`;
  }
  return null;
}

/** null when namespaces with rate-limited veth links can be made here; otherwise why not. */
export function netnsSupport(): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root (run as root, or skip the slow-network checks)';
  for (const cmd of ['ip', 'tc']) if (!which(cmd)) return `the '${cmd}' command (iproute2) is missing; install iproute2`;
  // Root in a container may still lack CAP_NET_ADMIN or a writable /run/netns: try once.
  const probe = `ds${ID_PREFIX()}probe`;
  try {
    run(which('ip')!, ['netns', 'add', probe]);
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return `cannot create a network namespace here (${stderr || (err as Error).message})`;
  } finally {
    try {
      execFileSync(which('ip')!, ['netns', 'del', probe], { stdio: 'ignore' });
    } catch {
      /* it was never made */
    }
  }
  return null;
}

interface Topology {
  hub: string;
  ranks: string[];
  addresses: string[];
}

/** This process's part of the namespace names: `ds<pid>x`. */
const ID_PREFIX = () => `${process.pid % 100000}x`;

/** Namespace names: short (interface and namespace names are limited), unique per process and world. */
function names(n: number, id: string): Topology {
  return {
    hub: `ds${id}h`,
    ranks: Array.from({ length: n }, (_, r) => `ds${id}r${r}`),
    addresses: Array.from({ length: n }, (_, r) => `10.77.0.${r + 1}`),
  };
}

function run(ip: string, args: string[]): void {
  execFileSync(ip, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Deletes the namespaces (their veth ends and qdiscs go with them); never throws. */
function teardown(t: Topology): void {
  const ip = which('ip') ?? 'ip';
  for (const ns of [...t.ranks, t.hub]) {
    try {
      execFileSync(ip, ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
}

function setup(t: Topology, rate: string): void {
  const ip = which('ip')!;
  const tc = which('tc')!;
  const inNs = (ns: string, cmd: string, args: string[]) => run(ip, ['netns', 'exec', ns, cmd, ...args]);
  // A burst of ~4 ms at the rate (at least 64 KiB, so that one GSO segment passes), queueing at most 100 ms.
  const shape = (ns: string, dev: string) => inNs(ns, tc, ['qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '512kb', 'latency', '100ms']);
  run(ip, ['netns', 'add', t.hub]);
  inNs(t.hub, ip, ['link', 'add', 'br0', 'type', 'bridge']);
  inNs(t.hub, ip, ['link', 'set', 'br0', 'up']);
  t.ranks.forEach((ns, r) => {
    run(ip, ['netns', 'add', ns]);
    run(ip, ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${r}`, 'netns', t.hub]);
    inNs(t.hub, ip, ['link', 'set', `p${r}`, 'master', 'br0']);
    inNs(t.hub, ip, ['link', 'set', `p${r}`, 'up']);
    inNs(ns, ip, ['addr', 'add', `${t.addresses[r]}/24`, 'dev', 'eth0']);
    inNs(ns, ip, ['link', 'set', 'eth0', 'up']);
    inNs(ns, ip, ['link', 'set', 'lo', 'up']);
    // Collectives send in bursts with idle gaps between steps; restarting slow start after each gap
    // would measure TCP's ramp-up rather than the link (clusters turn it off for the same reason).
    // Best effort: without sysctl the links are still rate-limited, only ramp-ups cost more.
    const sysctl = which('sysctl');
    if (sysctl) {
      try {
        inNs(ns, sysctl, ['-q', '-w', 'net.ipv4.tcp_slow_start_after_idle=0']);
      } catch {
        /* kept at the kernel's default */
      }
    }
    shape(ns, 'eth0');
    shape(t.hub, `p${r}`);
  });
}

/**
 * Runs `script` in n ranks, rank r in its own namespace behind a `rate` link, wired like the `ds`
 * launcher wires ranks on n hosts. Throws (a plain Error naming the reason) when netnsSupport()
 * does not hold; check it first and skip.
 */
export async function withNetnsWorld(n: number, script: string | URL, opts: NetnsWorldOptions): Promise<WorldResult> {
  const why = netnsSupport();
  if (why) throw new Error(`withNetnsWorld: ${why}`);
  const t = names(n, `${ID_PREFIX()}${Math.floor(Math.random() * 1000)}`);
  const onExit = () => teardown(t);
  process.once('exit', onExit);
  const started = Date.now();
  const children: ChildProcess[] = [];
  const results: RankResult[] = [];
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  try {
    setup(t, opts.rate);
    const ip = which('ip')!;
    const exits = Array.from({ length: n }, (_, rank) => {
      const extra = typeof opts.env === 'function' ? opts.env(rank) : (opts.env ?? {});
      // `ip netns exec` execs the command after entering the namespace: the child pid is the rank's.
      const child = spawn(ip, ['netns', 'exec', t.ranks[rank]!, process.execPath, ...tsNodeArgs(script, opts.args)], {
        cwd: opts.cwd ?? process.cwd(),
        env: {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(n),
          LOCAL_RANK: '0',
          LOCAL_SIZE: '1',
          MASTER_ADDR: t.addresses[0]!,
          MASTER_PORT: '29500',
          DS_HOST_ID: `netns-${t.ranks[rank]}`,
          DS_COMM_IFADDR: t.addresses[rank]!,
          DS_COMM_TRANSPORT: 'tcp',
          ...extra,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      const r: RankResult = { rank, pid: child.pid ?? -1, code: null, signal: null, stdout: '', stderr: '' };
      results.push(r);
      child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
      return new Promise<void>((done) =>
        child.on('close', (code, signal) => {
          r.code = code;
          r.signal = signal;
          // A rank that died leaves its peers waiting on it: end them now.
          if (code !== 0) killAll();
          done();
        }),
      );
    });
    timer = setTimeout(() => {
      timedOut = true;
      killAll();
    }, opts.timeoutMs ?? 120_000);
    await Promise.all(exits);
  } finally {
    if (timer) clearTimeout(timer);
    killAll();
    teardown(t);
    process.removeListener('exit', onExit);
  }
  return { ranks: results.sort((a, b) => a.rank - b.rank), timedOut, wallMs: Date.now() - started };
}

/** Namespaces this process made and has not torn down (none, once every world has ended). */
export function leftoverNamespaces(): string[] {
  const ip = which('ip');
  if (!ip) return [];
  const out = execFileSync(ip, ['netns', 'list'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`ds${ID_PREFIX()}`));
}
