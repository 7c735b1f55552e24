// The built-in cpu backend: ranks on one host share a memory segment per group and run the
// collectives on native threads (native/comm/). The Promise of each op resolves on the JS thread
// while compute goes on.
import { availableParallelism, hostname, networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';

import { DSUnsupportedError, type DType } from '@ds/tensor';

import { DSCommError, DSTimeoutError } from '../../errors.js';
import { loadCoreAddon, type CoreAddon, type NativeGroupHandle, type NativeOpError } from '../native.js';
import { segmentName, sweepStaleSegments } from '../shm.js';
import { PrefixStore, type Store } from '../store/store.js';
import { HierarchicalProcessGroup } from './hierarchical.js';
import { Observers } from '../observers.js';
import type { CommBackend, CommBuffer, CommObserver, CommOpName, GroupSpec, ObserverOptions, OpOptions, ProcessGroup, RecvOptions, ReduceOptions, RootOptions, Work } from '../types.js';
import { checkBuffer, checkPair, checkRank, checkReduceOp, checkTimeout, DTYPE_CODE, OP_CODE, REDUCE_CODE } from '../validate.js';
import { PromiseWork } from '../work.js';

export interface CpuBackendOptions {
  /** Staging chunk per rank and slot half; default 1 MiB (DS_COMM_CHUNK). */
  chunkBytes?: number;
  /** send/recv chunk; default 256 KiB. */
  p2pBytes?: number;
  /** Polls before a waiting thread sleeps on the futex; default 200 (short: cores are often shared). */
  spin?: number;
  /** Where POSIX shared memory shows up as files (for sweeping stale segments); /dev/shm. */
  shmDir?: string;
  /** auto: shared memory when every member is on this host, else TCP; default auto. */
  transport?: 'auto' | 'shm' | 'tcp';
  /** The address TCP peers reach this rank at; default the first non-internal IPv4 across hosts, 127.0.0.1 on one host. */
  ifAddr?: string;
  /** Replaces the host identity (hostname and boot id); tests use it to stage several "hosts" on one. */
  hostId?: string;
  /** Ranks of the job on this host (LOCAL_SIZE); decides recvPollUs's default. */
  localRanks?: number;
  /**
   * How long a blocking recv (RecvOptions.blocking) polls, yielding, before it sleeps on the futex:
   * a core left idle is taken back by the hypervisor of a VM, and waking it costs 0.2-5 ms. Default
   * 5000 us when this host's ranks fit its cores, else 0 (polling ranks would slow the computing ones).
   */
  recvPollUs?: number;
}

const ERR_TIMEOUT = 1;

/** A host identity: two ranks share memory only when these are equal (`override`: DS_HOST_ID). */
function hostId(override?: string): string {
  if (override) return override;
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    /* not Linux: the hostname alone */
  }
  return `${hostname()}/${boot}`;
}

/** The first non-internal IPv4 address of this host (what peers on other hosts dial). */
function publicAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return hostname();
}

export function cpuBackend(opts: CpuBackendOptions = {}): CommBackend {
  return {
    name: 'cpu',
    createGroup: (spec) => CpuProcessGroup.create(spec, opts),
  };
}

export class CpuProcessGroup implements ProcessGroup {
  readonly backend = 'cpu';
  private seq = 0;
  private readonly p2pSeqs = new Map<string, number>();
  private regCount = 0;
  private destroyed = false;
  private readonly observers = new Observers();

  private constructor(
    private readonly addon: CoreAddon,
    private readonly native: NativeGroupHandle,
    private readonly spec: GroupSpec,
    /** 'shm' (one host) or 'tcp' (across hosts). */
    readonly transport: 'shm' | 'tcp',
    /** CpuBackendOptions.recvPollUs, resolved. */
    private readonly recvPollUs = 0,
  ) {}

  get name(): string {
    return this.spec.name;
  }
  get rank(): number {
    return this.spec.rank;
  }
  get size(): number {
    return this.spec.ranks.length;
  }
  get ranks(): readonly number[] {
    return this.spec.ranks;
  }

  /**
   * Collective over the group's members. On one host: the store handshake that maps one shared
   * segment. Across hosts: a TCP mesh, plus, when some host holds several members, a hierarchical
   * group (shared memory inside hosts, TCP between one leader per host) for allReduce.
   */
  static async create(spec: GroupSpec, opts: CpuBackendOptions = {}): Promise<ProcessGroup> {
    const addon = loadCoreAddon();
    const { store, rank } = spec;
    const size = spec.ranks.length;
    await store.set(`host/${rank}`, hostId(opts.hostId));
    const hosts = await Promise.all(spec.ranks.map(async (_, q) => Buffer.from(await store.get(`host/${q}`)).toString('utf8')));
    const distinct = [...new Set(hosts)];
    const transport = opts.transport ?? 'auto';
    if (distinct.length > 1 && transport === 'shm') {
      throw new DSUnsupportedError(
        `cpu backend: group '${spec.name}' spans ${distinct.length} hosts (${distinct.map((h) => h.split('/')[0]).join(', ')}) but the shm transport was asked for; use tcp or auto`,
      );
    }
    const chunk = opts.chunkBytes ?? 1 << 20;
    if (distinct.length > 1 || transport === 'tcp') {
      // Advertise DS_COMM_IFADDR when given (ranks in separate network namespaces of one host need it).
      const advertise = opts.ifAddr ?? (distinct.length > 1 ? publicAddress() : '127.0.0.1');
      const flat = await CpuProcessGroup.createTcp(spec, addon, chunk, advertise);
      if (distinct.length === 1 || distinct.length === size || transport === 'tcp') return flat;
      return CpuProcessGroup.createHierarchical(spec, opts, hosts, flat);
    }
    const p2p = opts.p2pBytes ?? 256 << 10;
    const spin = opts.spin ?? 200;
    let native: NativeGroupHandle | undefined;
    try {
      if (rank === 0) {
        sweepStaleSegments(opts.shmDir ?? '/dev/shm', addon.shmUnlink);
        const name = segmentName('g');
        native = new addon.NativeGroup(name, 0, size, true, chunk, p2p, spin);
        await store.set('shm', name);
        // Once every member has mapped the segment its name is no longer needed: unlink it now so
        // that nothing is left behind however the processes end.
        try {
          await store.wait(spec.ranks.slice(1).map((_, i) => `attached/${i + 1}`), spec.timeoutMs);
        } finally {
          addon.shmUnlink(name);
        }
      } else {
        const name = Buffer.from(await store.get('shm', spec.timeoutMs)).toString('utf8');
        native = new addon.NativeGroup(name, rank, size, false, chunk, p2p, spin);
        await store.set(`attached/${rank}`, '1');
      }
    } catch (err) {
      native?.destroy();
      if (err instanceof DSCommError || err instanceof DSUnsupportedError) throw err;
      throw new DSCommError(`cpu backend: could not set up group '${spec.name}' on rank ${rank}: ${(err as Error).message}`, { cause: err });
    }
    const recvPollUs = opts.recvPollUs ?? ((opts.localRanks ?? size) <= availableParallelism() ? 5000 : 0);
    return new CpuProcessGroup(addon, native, spec, 'shm', recvPollUs);
  }

  private static async createHierarchical(spec: GroupSpec, opts: CpuBackendOptions, hosts: string[], flat: CpuProcessGroup): Promise<ProcessGroup> {
    const order = [...new Set(hosts)];
    const mine = hosts[spec.rank]!;
    const host = order.indexOf(mine);
    const localRanks = spec.ranks.filter((_, q) => hosts[q] === mine);
    const leaderRanks = order.map((h) => spec.ranks[hosts.indexOf(h)]!);
    const local = await CpuProcessGroup.create(
      { ...spec, name: `${spec.name}/host${host}`, ranks: localRanks, rank: localRanks.indexOf(spec.ranks[spec.rank]!), store: new PrefixStore(`host${host}`, spec.store) },
      { ...opts, transport: 'shm' },
    );
    const leaderAt = leaderRanks.indexOf(spec.ranks[spec.rank]!);
    const leaders =
      leaderAt < 0
        ? null
        : await CpuProcessGroup.create(
            { ...spec, name: `${spec.name}/leaders`, ranks: leaderRanks, rank: leaderAt, store: new PrefixStore('leaders', spec.store) },
            { ...opts, transport: 'tcp' },
          );
    return new HierarchicalProcessGroup(flat, local, leaders);
  }

  /** The TCP transport: every rank listens, publishes host:port, and the mesh connects natively. */
  private static async createTcp(spec: GroupSpec, addon: CoreAddon, chunk: number, advertise: string): Promise<CpuProcessGroup> {
    if (spec.ranks.length === 1) return new CpuProcessGroup(addon, new addon.NativeGroup('', 0, 1, false, chunk, chunk, 0, 'tcp', '127.0.0.1'), spec, 'tcp');
    const { store, rank } = spec;
    let native: NativeGroupHandle | undefined;
    try {
      native = new addon.NativeGroup('', rank, spec.ranks.length, false, chunk, chunk, 0, 'tcp', '0.0.0.0');
      await store.set(`tcp/${rank}`, `${advertise}:${native.port()}`);
      const addrs = await Promise.all(spec.ranks.map(async (_, q) => Buffer.from(await store.get(`tcp/${q}`, spec.timeoutMs)).toString('utf8')));
      await native.connect(addrs, spec.timeoutMs)[0];
    } catch (err) {
      native?.destroy();
      if (err instanceof DSCommError) throw err;
      const e = err as NativeOpError;
      throw new DSCommError(`cpu backend: could not connect group '${spec.name}' over TCP on rank ${rank}: ${e.message ?? String(err)}`, { cause: err });
    }
    return new CpuProcessGroup(addon, native, spec, 'tcp');
  }

  addObserver(fn: CommObserver, opts?: ObserverOptions): () => void {
    return this.observers.add(fn, opts);
  }

  private p2pSeq(op: 'send' | 'recv', peer: number): number {
    const key = `${op}${peer}`;
    const seq = this.p2pSeqs.get(key) ?? 0;
    this.p2pSeqs.set(key, (seq + 1) >>> 0);
    return seq;
  }

  private run(op: CommOpName, dtype: DType, redop: number, count: number, root: number, opts: OpOptions | undefined, input: CommBuffer | null, output: CommBuffer | null, msgBytes: number): Work {
    if (this.destroyed) throw new DSCommError(`${op}: group '${this.name}' was destroyed`);
    const timeoutMs = opts?.timeoutMs ?? this.spec.timeoutMs;
    checkTimeout(op, timeoutMs);
    // Collectives are numbered in one sequence every member shares; send/recv per channel, so
    // point-to-point traffic between some ranks never puts the others out of step.
    const seq = op === 'send' || op === 'recv' ? this.p2pSeq(op, root) : this.seq;
    if (op !== 'send' && op !== 'recv') this.seq = (this.seq + 1) >>> 0;
    const caller = this.observers.wantCaller ? Observers.caller() : undefined;
    const started = performance.now();
    // Observers hear of each op once: from the promise, or, for an op finished through waitSync (in a
    // hook, where the event loop does not run), right there, so a comms logger read after a run of
    // synchronous waits sees them all. The latency from waitSync is the wall time since submission.
    let told = false;
    const tell = (ms: number, ok: boolean) => {
      if (told) return;
      told = true;
      this.notify(op, seq, dtype, msgBytes, ms, ok, caller);
    };
    const [submitted, id] = this.native.submit(OP_CODE[op], seq, DTYPE_CODE[dtype], redop, count, root, timeoutMs, input?.array ?? null, output?.array ?? null);
    const promise = submitted.then(
        (ms) => tell(ms, true),
        (e: NativeOpError) => {
          tell(0, false);
          throw this.toError(op, seq, e);
        },
      );
    return new PromiseWork(op, seq, promise, {
      isDone: () => this.native.isDone(id),
      waitSync: (ms) => {
        const e = this.native.waitSync(id, ms ?? timeoutMs + 5000);
        if (e) {
          tell(0, false);
          throw this.toError(op, seq, e);
        }
        tell(performance.now() - started, true);
      },
    });
  }

  private notify(op: CommOpName, seq: number, dtype: DType, bytes: number, latencyMs: number, ok: boolean, caller: string | undefined): void {
    if (this.observers.empty) return;
    this.observers.emit({ op, group: this.name, groupSize: this.size, seq, dtype, bytes, latencyMs, ok, caller });
  }

  private toError(op: CommOpName, seq: number, e: NativeOpError): Error {
    const where = `${op} on group '${this.name}' (seq ${seq}, rank ${this.rank} of ${this.size})`;
    if (e.kind === ERR_TIMEOUT) return new DSTimeoutError(`${where}: ${e.message}`);
    return new DSCommError(`${where} failed: ${e.message}`);
  }

  allReduce(buf: CommBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    checkBuffer('allReduce', 'buffer', buf);
    checkReduceOp('allReduce', reduce, buf.dtype);
    return this.run('allReduce', buf.dtype, REDUCE_CODE[reduce], buf.array.length, 0, opts, buf, buf, buf.array.byteLength);
  }

  reduceScatter(output: CommBuffer, input: CommBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    checkPair('reduceScatter', output, input, this.size, this.rank);
    checkReduceOp('reduceScatter', reduce, output.dtype);
    return this.run('reduceScatter', output.dtype, REDUCE_CODE[reduce], output.array.length, 0, opts, input, output, output.array.byteLength);
  }

  allGather(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    checkPair('allGather', output, input, this.size, this.rank);
    return this.run('allGather', input.dtype, 0, input.array.length, 0, opts, input, output, input.array.byteLength);
  }

  broadcast(buf: CommBuffer, opts: RootOptions): Work {
    checkBuffer('broadcast', 'buffer', buf);
    checkRank('broadcast', 'root', opts?.root, this.size);
    return this.run('broadcast', buf.dtype, 0, buf.array.length, opts.root, opts, buf, buf, buf.array.byteLength);
  }

  allToAll(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    checkPair('allToAll', output, input, this.size, this.rank);
    return this.run('allToAll', input.dtype, 0, input.array.length, 0, opts, input, output, input.array.byteLength);
  }

  send(buf: CommBuffer, opts: OpOptions & { dst: number }): Work {
    checkBuffer('send', 'buffer', buf);
    checkRank('send', 'dst', opts?.dst, this.size, this.rank);
    return this.run('send', buf.dtype, 0, buf.array.length, opts.dst, opts, buf, null, buf.array.byteLength);
  }

  recv(buf: CommBuffer, opts: RecvOptions): Work {
    checkBuffer('recv', 'buffer', buf);
    checkRank('recv', 'src', opts?.src, this.size, this.rank);
    if (opts.blocking && this.transport === 'shm') {
      const done = this.recvHere(buf, opts);
      if (done) return done;
    }
    return this.run('recv', buf.dtype, 0, buf.array.length, opts.src, opts, null, buf, buf.array.byteLength);
  }

  /**
   * A blocking recv on this thread (RecvOptions.blocking): a Work already over, or null when the
   * channel's comm thread still has ops of its own (the recv then goes to it, in order).
   */
  private recvHere(buf: CommBuffer, opts: RecvOptions): Work | null {
    if (this.destroyed) throw new DSCommError(`recv: group '${this.name}' was destroyed`);
    const timeoutMs = opts.timeoutMs ?? this.spec.timeoutMs;
    checkTimeout('recv', timeoutMs);
    const key = `recv${opts.src}`;
    const seq = this.p2pSeqs.get(key) ?? 0;
    const caller = this.observers.wantCaller ? Observers.caller() : undefined;
    const started = performance.now();
    const e = this.native.recvHere(OP_CODE.recv, seq, DTYPE_CODE[buf.dtype], 0, buf.array.length, opts.src, timeoutMs, null, buf.array, this.recvPollUs);
    if (e === undefined) return null;
    this.p2pSeqs.set(key, (seq + 1) >>> 0);
    this.notify('recv', seq, buf.dtype, buf.array.byteLength, performance.now() - started, e === null, caller);
    const error = e === null ? null : this.toError('recv', seq, e);
    return new PromiseWork('recv', seq, error ? Promise.reject(error) : Promise.resolve(), {
      isDone: () => true,
      waitSync: () => {
        if (error) throw error;
      },
    });
  }

  barrier(opts?: OpOptions): Work {
    return this.run('barrier', 'u8', 0, 0, 0, opts, null, null, 0);
  }

  async allocRegistered(bytes: number): Promise<ArrayBuffer> {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new DSCommError(`allocRegistered: bytes must be a positive integer (got ${String(bytes)})`);
    if (this.destroyed) throw new DSCommError(`allocRegistered: group '${this.name}' was destroyed`);
    const id = this.regCount++;
    // Across hosts there is nothing to share: ordinary memory, the ops stage it as usual.
    if (this.transport === 'tcp') return new ArrayBuffer(bytes);
    const store: Store = this.spec.store;
    const name = segmentName(`r${id}`);
    const buffer = this.native.regCreate(name, bytes, id);
    try {
      await store.set(`reg/${id}/${this.rank}`, `${bytes}:${name}`);
      const entries = await Promise.all(this.ranks.map(async (_, q) => Buffer.from(await store.get(`reg/${id}/${q}`, this.spec.timeoutMs)).toString('utf8')));
      const names: string[] = [];
      entries.forEach((entry, q) => {
        const at = entry.indexOf(':');
        const theirs = Number(entry.slice(0, at));
        if (theirs !== bytes) throw new DSCommError(`allocRegistered on group '${this.name}': rank ${q} asked for ${theirs} bytes but rank ${this.rank} for ${bytes} (call #${id})`);
        names.push(entry.slice(at + 1));
      });
      this.native.regAttach(id, names);
      await store.set(`reg/${id}/attached/${this.rank}`, '1');
      await store.wait(this.ranks.map((_, q) => `reg/${id}/attached/${q}`), this.spec.timeoutMs);
    } finally {
      this.addon.shmUnlink(name);
    }
    return buffer;
  }


  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.native.destroy();
  }
}
