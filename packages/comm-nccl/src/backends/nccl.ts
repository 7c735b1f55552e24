// The `nccl` comm backend: every ProcessGroup op is an NCCL collective on GPU memory, issued on the
// group's own CUDA stream by the group's worker thread (native/nccl/comm.cc), ordered after the
// compute that produced its inputs with a CUDA event, and reported through a Work handle that
// overlaps with compute. DeepSpeed's counterpart is `comm_backend_name: "nccl"` (torch.distributed's
// ProcessGroupNCCL, with its watchdog). Differences: one communicator per group, made from a fresh
// ncclUniqueId that rank 0 publishes in the group's store (no ncclCommSplit, since newGroup is
// collective over the members only); barrier is an allReduce of one float on the device; a timed-out
// or failed op aborts the communicator (ncclCommAbort) at once, as torch does with
// TORCH_NCCL_ASYNC_ERROR_HANDLING, and every later op on the group fails saying why.
import {
  DSCommError,
  DSConfigError,
  DSTimeoutError,
  DSUnsupportedError,
  Observers,
  PromiseWork,
  type CommBackend,
  type CommObserver,
  type CommOpName,
  type GroupSpec,
  type ObserverOptions,
  type OpOptions,
  type ProcessGroup,
  type ReduceOptions,
  type RootOptions,
  type Store,
  type Work,
} from '@ds/core';
import type { DeviceArray, DType } from '@ds/tensor';

import { readNcclEnv, type NcclEnv } from '../env.js';
import { loadNcclAddon, type NativeOpError, type NcclAddon } from '../native/load.js';
import { ncclVersionText, probeNccl, unavailableReason } from '../status.js';
import { checkDevicePair, checkRank, checkReduceOp, checkTimeout, deviceArrayOf, DTYPE_CODE, OP_CODE, REDUCE_CODE, type NcclBuffer } from './checks.js';

/** This package's frames, skipped with core's when the comms logger looks for an op's caller. */
const NCCL_FRAMES = /[\\/]comm-nccl[\\/](src|dist)[\\/]/;
const ERR_TIMEOUT = 1;
/** After a timeout, how long the ranks wait for each other's reports of where they are. */
const REPORT_GRACE_MS = 2000;

export interface NcclBackendOptions {
  /**
   * The CUDA device this process's communicators run on. Default: the job's LOCAL_RANK (one process
   * per GPU, as `ds` starts them), else 0.
   */
  device?: number;
  /** LOCAL_RANK, as the plugin passes it from core's environment; used when `device` is not given. */
  localRank?: number;
  /**
   * The cudaStream_t whose work produces the buffers (the tensors' compute stream), as a bigint
   * handle: each op's NCCL kernel waits for the work queued on it before the op was submitted.
   * Default 0n, the legacy default stream, which is where work goes unless a stream is named.
   */
  computeStream?: bigint;
  /** Where the libraries are searched (default: read from process.env). */
  env?: NcclEnv;
}

/** The device and libraries a backend runs on. */
export interface NcclInfo {
  device: number;
  devices: number;
  /** NCCL's version, "2.27.3", and the file it came from. */
  version: string;
  library: string;
}

/**
 * Loads the CUDA runtime and NCCL and picks the device; throws DSUnsupportedError with one sentence
 * (what is missing, how to fix it) when this machine cannot run NCCL.
 */
export function startNccl(addon: NcclAddon, opts: NcclBackendOptions = {}): NcclInfo {
  const probe = probeNccl(addon, opts.env ?? readNcclEnv());
  const reason = unavailableReason(probe);
  if (reason !== null) throw new DSUnsupportedError(`comm backend 'nccl' cannot run here: ${reason}`);
  const device = opts.device ?? opts.localRank ?? 0;
  if (!Number.isInteger(device) || device < 0 || device >= probe.devices) {
    const from = opts.device !== undefined ? 'nccl({ device })' : 'LOCAL_RANK';
    throw new DSConfigError(
      `comm backend 'nccl': ${from} asks for CUDA device ${String(device)} but this process sees ${probe.devices} GPU(s); start at most one process per GPU (ds --num_gpus ${probe.devices}), or pass nccl({ device }) to choose one`,
      [{ path: from, message: `must be below ${probe.devices}`, value: device }],
    );
  }
  // A process that exits, cleanly or not, aborts its communicators first so that it can exit.
  if (addon.claimExitHook()) process.once('exit', () => addon.shutdown());
  return { device, devices: probe.devices, version: ncclVersionText(probe.ncclVersion), library: probe.nccl! };
}

export function ncclBackend(opts: NcclBackendOptions = {}): CommBackend {
  const addon = loadNcclAddon();
  const info = startNccl(addon, opts);
  // deviceMemory tells core's comm layer to hand cuda buffers over as they are (no host staging).
  const backend: CommBackend & { readonly deviceMemory: readonly string[] } = {
    name: 'nccl',
    deviceMemory: ['cuda'],
    createGroup: (spec) => NcclProcessGroup.create(addon, info, spec, opts.computeStream ?? 0n),
  };
  return backend;
}

/** The ranks of `keys` (one per group rank) that are not in the store, waiting up to `ms` for them. */
async function absent(store: Store, keys: readonly string[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const present = await Promise.all(keys.map((k) => store.check([k])));
    const missing = present.flatMap((ok, q) => (ok ? [] : [q]));
    if (missing.length === 0 || Date.now() >= deadline) return missing;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class NcclProcessGroup implements ProcessGroup {
  readonly backend = 'nccl';
  private seq = 0;
  private readonly p2pSeqs = new Map<string, number>();
  private destroyed = false;
  private readonly observers = new Observers();

  private constructor(
    private readonly addon: NcclAddon,
    private readonly comm: number,
    private readonly spec: GroupSpec,
    private readonly computeStream: bigint,
    /** The CUDA device and NCCL this group runs on. */
    readonly info: NcclInfo,
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
   * Collective over the members: rank 0 makes the ncclUniqueId and publishes it in the group's store,
   * every member says it has it (so that a member that never comes is named, instead of NCCL's set-up
   * hanging on it), then each makes its communicator, bounded by the group's timeout.
   */
  static async create(addon: NcclAddon, info: NcclInfo, spec: GroupSpec, computeStream: bigint): Promise<ProcessGroup> {
    const { store, rank } = spec;
    const where = `comm backend 'nccl': group '${spec.name}' (global ranks [${spec.ranks.join(', ')}]) on rank ${rank}`;
    const members = spec.ranks.map((_, q) => `nccl/joined/${q}`);
    let id: Uint8Array;
    try {
      if (rank === 0) {
        id = addon.uniqueId();
        await store.set('nccl/id', id);
      } else {
        id = await store.get('nccl/id', spec.timeoutMs);
      }
      await store.set(`nccl/joined/${rank}`, '1');
    } catch (err) {
      if (err instanceof DSTimeoutError) throw new DSTimeoutError(`${where}: group rank 0 (global rank ${spec.ranks[0]}) never published the NCCL id within ${spec.timeoutMs} ms`, { cause: err });
      throw new DSCommError(`${where}: could not exchange the NCCL id: ${(err as Error).message}`, { cause: err });
    }
    const missing = await absent(store, members, spec.timeoutMs);
    if (missing.length > 0) {
      throw new DSTimeoutError(`${where}: group rank(s) ${missing.join(', ')} (global ${missing.map((q) => spec.ranks[q]).join(', ')}) did not join within ${spec.timeoutMs} ms`);
    }
    try {
      const comm = await addon.createComm(id, spec.ranks.length, rank, info.device, spec.timeoutMs)[0];
      return new NcclProcessGroup(addon, comm, spec, computeStream, info);
    } catch (err) {
      const e = err as NativeOpError;
      const Err = e.kind === ERR_TIMEOUT ? DSTimeoutError : DSCommError;
      throw new Err(`${where}: ${e.message ?? String(err)}`, { cause: err });
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

  private where(op: CommOpName, seq: number): string {
    return `${op} on group '${this.name}' (nccl, seq ${seq}, rank ${this.rank} of ${this.size}, global ranks [${this.ranks.join(', ')}])`;
  }

  private run(op: CommOpName, dtype: DType, redop: number, count: number, peer: number, opts: OpOptions | undefined, input: DeviceArray | null, output: DeviceArray | null, msgBytes: number): Work {
    if (this.destroyed) throw new DSCommError(`${op}: group '${this.name}' was destroyed`);
    const timeoutMs = opts?.timeoutMs ?? this.spec.timeoutMs;
    checkTimeout(op, timeoutMs);
    const p2p = op === 'send' || op === 'recv';
    const seq = p2p ? this.p2pSeq(op, peer) : this.seq;
    if (!p2p) this.seq = (this.seq + 1) >>> 0;
    const caller = this.observers.wantCaller ? Observers.caller(NCCL_FRAMES) : undefined;
    const started = performance.now();
    // Observers hear of each op once: from the promise, or from waitSync (in a hook, where the event
    // loop does not run), as core's cpu backend does.
    let told = false;
    const tell = (ms: number, ok: boolean) => {
      if (told || this.observers.empty) return;
      told = true;
      this.observers.emit({ op, group: this.name, groupSize: this.size, seq, dtype, bytes: msgBytes, latencyMs: ms, ok, caller });
    };
    let submitted: Promise<number>, id: number;
    try {
      [submitted, id] = this.addon.submit(this.comm, OP_CODE[op], seq, DTYPE_CODE[dtype], redop, count, peer, timeoutMs, input?.address ?? 0n, output?.address ?? 0n, this.computeStream);
    } catch (err) {
      // A pointer that is not memory of this group's GPU, or a group whose communicator is gone:
      // the op never started, so its sequence number is given back.
      if (p2p) this.p2pSeqs.set(`${op}${peer}`, seq);
      else this.seq = seq;
      const message = (err as Error).message;
      if (err instanceof TypeError) throw new DSCommError(`${this.where(op, seq)}: ${message}; the buffer must be a DeviceArray allocated on this process's GPU (CUDA device ${this.info.device})`, { cause: err });
      throw new DSCommError(`${this.where(op, seq)} could not start: ${message}`, { cause: err });
    }
    const promise = submitted.then(
      (ms) => tell(ms, true),
      async (e: NativeOpError) => {
        tell(0, false);
        throw await this.toError(op, seq, e, !p2p);
      },
    );
    return new PromiseWork(op, seq, promise, {
      isDone: () => this.addon.isDone(id),
      waitSync: (ms) => {
        const e = this.addon.waitSync(id, ms ?? timeoutMs + 5000);
        if (e) {
          tell(0, false);
          throw this.errorOf(op, seq, e, '');
        }
        tell(performance.now() - started, true);
      },
    });
  }

  private errorOf(op: CommOpName, seq: number, e: NativeOpError, missing: string): Error {
    if (e.kind === ERR_TIMEOUT) return new DSTimeoutError(`${this.where(op, seq)}: ${e.message}${missing}; raise DS_COMM_TIMEOUT if the peers are only slow`);
    return new DSCommError(`${this.where(op, seq)} failed: ${e.message}${missing}`);
  }

  /**
   * The error of a failed op. After a collective's timeout every rank stuck in it says so in the
   * store; the ranks that have not said so within a short grace are the ones that never reached the
   * op (stuck earlier, busy elsewhere, or gone), and are named.
   */
  private async toError(op: CommOpName, seq: number, e: NativeOpError, collective: boolean): Promise<Error> {
    if (e.kind !== ERR_TIMEOUT || !collective || this.size === 1) return this.errorOf(op, seq, e, '');
    let missing = '';
    try {
      const { store } = this.spec;
      await store.set(`nccl/timeout/${seq}/${this.rank}`, '1');
      const absentRanks = await absent(store, this.ranks.map((_, q) => `nccl/timeout/${seq}/${q}`), Math.min(REPORT_GRACE_MS, this.spec.timeoutMs));
      if (absentRanks.length > 0) missing = `; group rank(s) ${absentRanks.join(', ')} (global ${absentRanks.map((q) => this.ranks[q]).join(', ')}) never reached this op`;
      else missing = '; every rank reached this op, so it stalled inside NCCL (network or GPU)';
    } catch {
      // The store itself is gone (rank 0 exited): report the timeout without the ranks.
    }
    return this.errorOf(op, seq, e, missing);
  }

  allReduce(buf: NcclBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    const a = deviceArrayOf('allReduce', 'buffer', buf);
    checkReduceOp('allReduce', reduce, buf.dtype);
    return this.run('allReduce', buf.dtype, REDUCE_CODE[reduce], a.length, 0, opts, a, a, a.byteLength);
  }

  reduceScatter(output: NcclBuffer, input: NcclBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    const { out, inp } = checkDevicePair('reduceScatter', output, input, this.size, this.rank);
    checkReduceOp('reduceScatter', reduce, output.dtype);
    return this.run('reduceScatter', output.dtype, REDUCE_CODE[reduce], out.length, 0, opts, inp, out, out.byteLength);
  }

  allGather(output: NcclBuffer, input: NcclBuffer, opts?: OpOptions): Work {
    const { out, inp } = checkDevicePair('allGather', output, input, this.size, this.rank);
    return this.run('allGather', input.dtype, 0, inp.length, 0, opts, inp, out, inp.byteLength);
  }

  broadcast(buf: NcclBuffer, opts: RootOptions): Work {
    const a = deviceArrayOf('broadcast', 'buffer', buf);
    checkRank('broadcast', 'root', opts?.root, this.size);
    return this.run('broadcast', buf.dtype, 0, a.length, opts.root, opts, a, a, a.byteLength);
  }

  allToAll(output: NcclBuffer, input: NcclBuffer, opts?: OpOptions): Work {
    const { out, inp } = checkDevicePair('allToAll', output, input, this.size, this.rank);
    return this.run('allToAll', input.dtype, 0, inp.length, 0, opts, inp, out, inp.byteLength);
  }

  send(buf: NcclBuffer, opts: OpOptions & { dst: number }): Work {
    const a = deviceArrayOf('send', 'buffer', buf);
    checkRank('send', 'dst', opts?.dst, this.size, this.rank);
    return this.run('send', buf.dtype, 0, a.length, opts.dst, opts, a, null, a.byteLength);
  }

  recv(buf: NcclBuffer, opts: OpOptions & { src: number }): Work {
    const a = deviceArrayOf('recv', 'buffer', buf);
    checkRank('recv', 'src', opts?.src, this.size, this.rank);
    return this.run('recv', buf.dtype, 0, a.length, opts.src, opts, null, a, a.byteLength);
  }

  barrier(opts?: OpOptions): Work {
    return this.run('barrier', 'f32', 0, 0, 0, opts, null, null, 0);
  }

  /**
   * Not available: the contract's registered buffer is host memory (an ArrayBuffer), which NCCL
   * cannot move. Device buffers come from the tensor's cuda allocator.
   */
  async allocRegistered(bytes: number): Promise<ArrayBuffer> {
    throw new DSUnsupportedError(
      `allocRegistered(${bytes}) on group '${this.name}': the nccl backend moves GPU memory only, and a registered buffer is host memory; allocate the flat buffer on 'cuda' instead`,
    );
  }

  /** Closes the communicator (ncclCommFinalize + ncclCommDestroy; ops still in flight fail and it is aborted). Not collective. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.addon.closeComm(this.comm, Math.min(this.spec.timeoutMs, 10_000))[0];
  }
}
