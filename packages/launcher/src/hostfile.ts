// Hostfiles and the include/exclude filter, with DeepSpeed's rules (deepspeed/launcher/runner.py):
//
//   hostfile line   `<host> slots=<N>`; `#` comments and blank lines are skipped; a duplicate host,
//                   a line of any other shape, or a file with no host at all is an error.
//   filter          NODE_SPEC[@NODE_SPEC...], NODE_SPEC = NAME[:SLOT[,SLOT...]]; a bare NAME means
//                   every slot of that host. Hosts keep the hostfile's order; hosts left without
//                   slots are dropped.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { DSLaunchError } from './errors.js';

/** Host name -> number of slots (GPUs, or cpu ranks), in hostfile order. */
export type ResourcePool = Map<string, number>;
/** Host name -> the slot ids to use on it, in hostfile order. This is DeepSpeed's "world info". */
export type ActiveResources = Map<string, number[]>;

const HOST_LINE = /^(\S+)\s+slots=(\d+)/;

/** Parses hostfile text. `source` names the file in error messages. */
export function parseHostfile(text: string, source = 'hostfile'): ResourcePool {
  const pool: ResourcePool = new Map();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = HOST_LINE.exec(line);
    if (!m) {
      throw new DSLaunchError(
        `Hostfile ${source} line ${index + 1} is a bad entry: '${line}'. Each line must read ` +
          `'<host> slots=<N>' (for example 'worker-0 slots=8'); comments start with '#'.`,
        { code: 'DS_LAUNCH_HOSTFILE' },
      );
    }
    const host = m[1]!;
    if (pool.has(host)) {
      throw new DSLaunchError(
        `Hostfile ${source} line ${index + 1} lists host '${host}' a second time; ` +
          `each host may appear once, with its total slot count.`,
        { code: 'DS_LAUNCH_HOSTFILE' },
      );
    }
    pool.set(host, Number(m[2]));
  });
  if (pool.size === 0) {
    throw new DSLaunchError(
      `Hostfile ${source} is empty or not formatted correctly: it names no host. ` +
        `Add lines like 'worker-0 slots=8', or remove the file to run on this machine only.`,
      { code: 'DS_LAUNCH_HOSTFILE' },
    );
  }
  return pool;
}

/**
 * Reads a hostfile. A missing file is not an error (DeepSpeed then runs on local resources only):
 * the result is null and the caller warns. A directory in its place is an error.
 */
export function readHostfile(path: string): ResourcePool | null {
  if (!existsSync(path)) return null;
  if (!statSync(path).isFile()) {
    throw new DSLaunchError(`Hostfile ${path} is not a regular file; pass a file with -H/--hostfile.`, {
      code: 'DS_LAUNCH_HOSTFILE',
    });
  }
  return parseHostfile(readFileSync(path, 'utf8'), path);
}

function parseSlot(text: string, spec: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) {
    throw new DSLaunchError(
      `${flag} '${spec}': slot '${text}' is not a non-negative integer. ` +
        `Write NAME[:SLOT[,SLOT...]][@NAME...], for example 'worker-0@worker-1:0,2'.`,
      { code: 'DS_LAUNCH_FILTER' },
    );
  }
  return Number(text);
}

/** Parses `NAME[:SLOT,...][@NAME[:SLOT,...]]...` into host -> sorted unique slots ([] = whole host). */
export function parseNodeConfigList(spec: string, flag = '--include'): Map<string, number[]> {
  const nodes = new Map<string, number[]>();
  for (const part of spec.split('@')) {
    const pieces = part.split(':');
    const host = pieces[0]!.trim();
    if (host === '' || pieces.length > 2) {
      throw new DSLaunchError(
        `${flag} '${spec}': '${part}' is not a node spec. Write NAME[:SLOT[,SLOT...]] and join ` +
          `nodes with '@', for example 'worker-0@worker-1:0,2'.`,
        { code: 'DS_LAUNCH_FILTER' },
      );
    }
    const slots = pieces.length === 2 ? pieces[1]!.split(',').map((s) => parseSlot(s, spec, flag)) : [];
    nodes.set(host, [...(nodes.get(host) ?? []), ...slots]);
  }
  for (const [host, slots] of nodes) nodes.set(host, [...new Set(slots)].sort((a, b) => a - b));
  return nodes;
}

/**
 * Filters active resources by an include or an exclude string (never both). Slots named in the
 * filter must exist on the host; hosts must exist in `hosts`.
 */
export function parseResourceFilter(hosts: ActiveResources, include = '', exclude = ''): ActiveResources {
  if (include !== '' && exclude !== '') {
    throw new DSLaunchError(
      `--include '${include}' and --exclude '${exclude}' are mutually exclusive; pass only one of them.`,
      { code: 'DS_LAUNCH_FILTER' },
    );
  }
  if (include === '' && exclude === '') return hosts;
  const flag = include !== '' ? '--include' : '--exclude';
  const filtered = new Map<string, number[]>();
  if (exclude !== '') for (const [h, s] of hosts) filtered.set(h, [...s]);

  for (const [host, slots] of parseNodeConfigList(include || exclude, flag)) {
    const available = hosts.get(host);
    if (available === undefined) {
      throw new DSLaunchError(
        `${flag}: hostname '${host}' not found in the hostfile (hosts: ${[...hosts.keys()].join(', ')}).`,
        { code: 'DS_LAUNCH_FILTER' },
      );
    }
    for (const slot of slots) {
      if (!available.includes(slot)) {
        throw new DSLaunchError(
          `${flag}: no slot '${slot}' on host '${host}' (its slots: ${available.join(',') || 'none'}).`,
          { code: 'DS_LAUNCH_FILTER' },
        );
      }
    }
    if (include !== '') filtered.set(host, slots.length > 0 ? slots : [...available]);
    else filtered.set(host, slots.length > 0 ? filtered.get(host)!.filter((s) => !slots.includes(s)) : []);
  }

  // Keep the hostfile's host order, drop duplicate slots and hosts left empty.
  const ordered: ActiveResources = new Map();
  for (const host of hosts.keys()) {
    const slots = filtered.get(host);
    if (slots && slots.length > 0) ordered.set(host, [...new Set(slots)]);
  }
  return ordered;
}

/**
 * The resource pool with include/exclude applied. Every host starts from slots 0..N-1 of its
 * hostfile line, so an included slot beyond N is an error (DeepSpeed seeds an included host with
 * the slots the filter names and so lets `-i host:7` through on a `slots=2` host; we do not).
 */
export function parseInclusionExclusion(pool: ResourcePool, include = '', exclude = ''): ActiveResources {
  const active: ActiveResources = new Map();
  for (const [host, count] of pool) active.set(host, Array.from({ length: count }, (_, i) => i));
  return parseResourceFilter(active, include, exclude);
}

/** DeepSpeed's `--world_info` encoding: JSON of host -> slots, then URL-safe base64. */
export function encodeWorldInfo(active: ActiveResources): string {
  return Buffer.from(JSON.stringify(Object.fromEntries(active)), 'utf8').toString('base64url');
}

export function decodeWorldInfo(encoded: string): ActiveResources {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new DSLaunchError(`--world_info '${encoded}' is not base64url-encoded JSON.`, { cause });
  }
  const ok =
    typeof parsed === 'object' &&
    parsed !== null &&
    Object.values(parsed).every((v) => Array.isArray(v) && v.every((s) => Number.isInteger(s) && s >= 0));
  if (!ok) throw new DSLaunchError(`--world_info must encode {host: [slot, ...]}; got ${JSON.stringify(parsed)}.`);
  return new Map(Object.entries(parsed as Record<string, number[]>));
}
