// The `mpi` comm backend: every ProcessGroup op is an MPI non-blocking collective (MPI_Iallreduce,
// MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast, MPI_Ialltoall, MPI_Ibarrier, MPI_Isend/Irecv)
// started and tested by one progress thread per process (native/mpi/engine.cc), so a Work handle
// overlaps with compute like the cpu backend's. DeepSpeed's counterpart is `comm_backend_name: "mpi"`
// (torch.distributed's mpi backend). Differences: groups are communicators made with
// MPI_Comm_create_group (collective over the members only, like newGroup) rather than a split of
// the world; bf16/f16 reduce through user-defined MPI ops that add in f32 and round at each pairwise
// step (the cpu backend rounds once), so with 3 or more ranks a sum can differ in the last bit;
// the per-op timeout, which MPI lacks, fails the op with the ranks that never started it.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

import {
  DSCommError,
  DSConfigError,
  Observers,
  PromiseWork,
  DSTimeoutError,
  DSUnsupportedError,
  type CommBackend,
  type CommBuffer,
  type CommObserver,
  type CommOpName,
  type GroupSpec,
  type ObserverOptions,
  type OpOptions,
  type ProcessGroup,
  type ReduceOptions,
  type RootOptions,
  type Work,
} from '@ds/core';
import type { DType } from '@ds/tensor';

import { loadMpiAddon, type MpiAddon, type MpiInfo, type NativeOpError } from '../native/load.js';
import { checkBuffer, checkPair, checkRank, checkReduceOp, checkTimeout, DTYPE_CODE, OP_CODE, REDUCE_CODE } from './checks.js';

/** This package's frames, skipped with core's when the comms logger looks for an op's caller. */
const MPI_FRAMES = /[\\/]comm-mpi[\\/](src|dist)[\\/]/;

export interface MpiBackendOptions {
  /** Replaces the host identity (hostname and boot id) that decides whose pid is watched for liveness (DS_HOST_ID). */
  hostId?: string;
  /** Path of Open MPI's libmpi.so.40 when it is not on the loader's path; the first backend made in a process decides. */
  library?: string;
  /**
   * The job's rank and world size as the environment gives them (the plugin passes core's RANK and
   * WORLD_SIZE): checked against MPI_COMM_WORLD when the backend is made, before any rendezvous,
   * so every rank of a job started without mpirun fails at once, saying so.
   */
  job?: { rank: number; worldSize: number };
}

/** The job must be MPI's world: same size, same rank. */
function checkJob(job: { rank: number; worldSize: number }, info: MpiInfo): void {
  if (job.worldSize === info.size && job.rank === info.rank) return;
  throw new DSConfigError(
    `comm backend 'mpi': this job has WORLD_SIZE=${job.worldSize} and RANK=${job.rank} but MPI_COMM_WORLD has ${info.size} process(es) with this one at rank ${info.rank}; ` +
      'start the job with mpirun or `ds --launcher openmpi` (which set both alike), or use comm_backend_name "cpu"',
    [{ path: 'RANK', message: 'differs from the MPI rank', value: job.rank }],
  );
}

const ERR_TIMEOUT = 1;

function hostKey(override?: string): string {
  if (override) return override;
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    /* not Linux: the hostname alone */
  }
  return `${hostname()}/${boot}`;
}

/** A tag all members compute alike, so that communicators created at once do not mix. */
function groupTag(spec: GroupSpec): number {
  let h = 2166136261;
  for (const ch of `${spec.name}:${spec.ranks.join(',')}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return (h >>> 0) & 0x7fff;
}

/**
 * Loads libmpi and initialises MPI; throws DSUnsupportedError (one sentence: what is missing and
 * what to install) when this machine has no usable MPI.
 */
export function startMpi(addon: MpiAddon = loadMpiAddon(), library?: string): MpiInfo {
  try {
    const info = addon.init(library);
    // A clean exit finalises MPI; a failing one leaves without it, so mpirun stops the whole job
    // (MPI_Finalize would wait for peers that may be stuck in an op with this rank).
    if (info.first) process.once('exit', (code) => addon.shutdown(code === 0));
    return info;
  } catch (err) {
    throw new DSUnsupportedError(`comm backend 'mpi' cannot run here: ${(err as Error).message}`, { cause: err });
  }
}

export function mpiBackend(opts: MpiBackendOptions = {}): CommBackend {
  const addon = loadMpiAddon();
  const info = startMpi(addon, opts.library);
  if (opts.job) checkJob(opts.job, info);
  return {
    name: 'mpi',
    createGroup: (spec) => MpiProcessGroup.create(addon, info, spec, opts),
  };
}

export class MpiProcessGroup implements ProcessGroup {
  readonly backend = 'mpi';
  private seq = 0;
  private readonly p2pSeqs = new Map<string, number>();
  private destroyed = false;
  private readonly observers = new Observers();

  private constructor(
    private readonly addon: MpiAddon,
    private readonly comm: number,
    private readonly spec: GroupSpec,
    /** The MPI library's version line. */
    readonly mpiVersion: string,
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
   * Collective over the members. The job's global ranks must be MPI_COMM_WORLD's (what mpirun and
   * `ds --launcher openmpi` give); the members meet in the store first (bounded by the timeout,
   * since MPI's communicator creation would wait forever), trading host and pid for liveness checks.
   */
  static async create(addon: MpiAddon, info: MpiInfo, spec: GroupSpec, opts: MpiBackendOptions): Promise<ProcessGroup> {
    const me = spec.ranks[spec.rank]!;
    if (spec.name === 'world') checkJob({ rank: me, worldSize: spec.ranks.length }, info);
    if (me !== info.rank || spec.ranks.some((r) => r >= info.size)) {
      throw new DSCommError(`comm backend 'mpi': group '${spec.name}' names global ranks [${spec.ranks.join(', ')}] but MPI_COMM_WORLD has ${info.size} process(es) and this is MPI rank ${info.rank} (global rank ${me})`);
    }
    const { store } = spec;
    const host = hostKey(opts.hostId);
    await store.set(`mpi/${spec.rank}`, `${process.pid}|${host}`);
    const entries = await Promise.all(spec.ranks.map(async (_, q) => Buffer.from(await store.get(`mpi/${q}`, spec.timeoutMs)).toString('utf8')));
    const pids = entries.map((e) => {
      const at = e.indexOf('|');
      return e.slice(at + 1) === host ? Number(e.slice(0, at)) : 0;
    });
    try {
      const comm = await addon.createComm([...spec.ranks], pids, groupTag(spec), spec.timeoutMs)[0];
      return new MpiProcessGroup(addon, comm, spec, info.version);
    } catch (err) {
      const e = err as NativeOpError;
      throw new DSCommError(`comm backend 'mpi': could not create group '${spec.name}' on rank ${spec.rank}: ${e.message ?? String(err)}`, { cause: err });
    }
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
    const seq = op === 'send' || op === 'recv' ? this.p2pSeq(op, root) : this.seq;
    if (op !== 'send' && op !== 'recv') this.seq = (this.seq + 1) >>> 0;
    const caller = this.observers.wantCaller ? Observers.caller(MPI_FRAMES) : undefined;
    const [submitted, id] = this.addon.submit(this.comm, this.size, this.rank, OP_CODE[op], seq, DTYPE_CODE[dtype], redop, count, root, timeoutMs, input?.array ?? null, output?.array ?? null);
    const promise = submitted.then(
      (ms) => this.notify(op, seq, dtype, msgBytes, ms, true, caller),
      (e: NativeOpError) => {
        this.notify(op, seq, dtype, msgBytes, 0, false, caller);
        throw this.toError(op, seq, e);
      },
    );
    return new PromiseWork(op, seq, promise, {
      isDone: () => this.addon.isDone(id),
      waitSync: (ms) => {
        const e = this.addon.waitSync(id, ms ?? timeoutMs + 5000);
        if (e) throw this.toError(op, seq, e);
      },
    });
  }

  private notify(op: CommOpName, seq: number, dtype: DType, bytes: number, latencyMs: number, ok: boolean, caller: string | undefined): void {
    if (this.observers.empty) return;
    this.observers.emit({ op, group: this.name, groupSize: this.size, seq, dtype, bytes, latencyMs, ok, caller });
  }

  private toError(op: CommOpName, seq: number, e: NativeOpError): Error {
    const where = `${op} on group '${this.name}' (mpi, seq ${seq}, rank ${this.rank} of ${this.size})`;
    const global = e.missing.length ? ` [global rank(s) ${e.missing.map((q) => this.ranks[q]).join(', ')}]` : '';
    if (e.kind === ERR_TIMEOUT) return new DSTimeoutError(`${where}: ${e.message}${global}; raise DS_COMM_TIMEOUT if the peers are only slow`);
    return new DSCommError(`${where} failed: ${e.message}${global}`);
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

  recv(buf: CommBuffer, opts: OpOptions & { src: number }): Work {
    checkBuffer('recv', 'buffer', buf);
    checkRank('recv', 'src', opts?.src, this.size, this.rank);
    return this.run('recv', buf.dtype, 0, buf.array.length, opts.src, opts, null, buf, buf.array.byteLength);
  }

  barrier(opts?: OpOptions): Work {
    return this.run('barrier', 'u8', 0, 0, 0, opts, null, null, 0);
  }

  /**
   * Ordinary memory: MPI moves any buffer itself (shared memory between ranks of one host is Open
   * MPI's own vader transport), so there is nothing to register. Not collective here.
   */
  async allocRegistered(bytes: number): Promise<ArrayBuffer> {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new DSCommError(`allocRegistered: bytes must be a positive integer (got ${String(bytes)})`);
    if (this.destroyed) throw new DSCommError(`allocRegistered: group '${this.name}' was destroyed`);
    return new ArrayBuffer(bytes);
  }

  /** Frees the communicator (kept when an op failed with MPI still holding it). Not collective. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.addon.freeComm(this.comm)[0];
  }
}
