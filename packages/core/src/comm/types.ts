// The comm contracts (c10d's shape): a ProcessGroup runs collectives on buffer descriptors and
// returns Work handles; a CommBackend makes ProcessGroups. Engine and ZeRO code against these.
import type { DeviceArray, DType, HostArray } from '@ds/tensor';

export type CommArray = HostArray;

/**
 * A buffer in host memory: `array` holds the elements (bf16 and f16 as raw bits in a Uint16Array).
 * Views of a larger buffer are fine. A buffer must not be touched by the caller until the op's
 * Work completes. This is what a host-memory backend's ops receive.
 */
export interface CommBuffer {
  dtype: DType;
  array: CommArray;
}

/**
 * What ProcessGroup ops take: a host buffer, or device memory (a sim or cuda tensor's operand()).
 * Groups of a backend that moves only host memory get device buffers through staging copies
 * (staging.ts); a backend that reads device memory itself (nccl) lists it in CommBackend.deviceMemory.
 */
export interface AnyCommBuffer {
  dtype: DType;
  array: HostArray | DeviceArray;
}

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

export type CommOpName = 'barrier' | 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'allToAll' | 'send' | 'recv';

export interface OpOptions {
  /** Per-op timeout; default the group's (DS_COMM_TIMEOUT, 300 s). */
  timeoutMs?: number;
}
export interface RecvOptions extends OpOptions {
  src: number;
  /**
   * The caller is going to wait for the message at once and has nothing else to do meanwhile (a
   * pipeline stage's receive, DeepSpeed's blocking recv): the cpu backend may then receive it on the
   * calling thread, blocking it (timers and I/O callbacks wait) until the message is in, which
   * spares the message the hand-off to and from a comm thread; the Work returned is then already
   * complete. Backends that always receive on their own threads ignore it.
   */
  blocking?: boolean;
}
export interface ReduceOptions extends OpOptions {
  /** Default 'sum'. Float dtypes reduce in f32 and round once; integers wrap; avg needs a float dtype. */
  op?: ReduceOp;
}
export interface RootOptions extends OpOptions {
  /** Group rank that holds the data. */
  root: number;
}

/**
 * An op in flight. Awaiting the Work itself is the same as awaiting `wait()`, so
 * `await group.allReduce(buf)` is the blocking form and keeping the handle is the async form.
 */
export interface Work extends PromiseLike<void> {
  readonly op: CommOpName;
  /**
   * Collectives: the group's collective sequence number (the same on every rank for the same op).
   * send/recv: the message number on that channel (this rank to/from that peer).
   */
  readonly seq: number;
  /** Resolves when the op completed on this rank; rejects with DSCommError / DSTimeoutError. */
  wait(): Promise<void>;
  /** True once the op is over on this rank; on the cpu backend this turns true without yielding to the event loop. */
  isCompleted(): boolean;
  /**
   * Blocks the calling thread until the op is over on this rank and throws its error, for code
   * that cannot await (autograd and module hooks). `timeoutMs` bounds the wait (default: the op's
   * timeout plus 5 s). Groups whose ops complete on the event loop (hierarchical allReduce, the
   * in-process fake) throw DSUnsupportedError unless the op has already settled. Optional in the
   * type so that Work-like wrappers stay valid; every Work a backend here returns has it.
   */
  waitSync?(timeoutMs?: number): void;
}

/** What an observer (the comms logger) learns about each finished op. */
export interface CommEvent {
  op: CommOpName;
  group: string;
  groupSize: number;
  seq: number;
  dtype: DType;
  /** Bytes of the message as DeepSpeed's comms logger counts it (see bandwidth.ts). */
  bytes: number;
  /** Time the op took on the comm thread, waiting for peers included. */
  latencyMs: number;
  ok: boolean;
  /** The function that called the op, when an observer asked for callers. */
  caller?: string;
}
export type CommObserver = (event: CommEvent) => void;
export interface ObserverOptions {
  /** Record the calling function of each op (costs a stack capture per op). */
  captureCaller?: boolean;
}

export interface ProcessGroup {
  /** Names the group in errors and logs ('world', or 'group[0,2]'). */
  readonly name: string;
  readonly backend: string;
  /** This process's rank in the group. */
  readonly rank: number;
  readonly size: number;
  /** Global rank of each group rank. */
  readonly ranks: readonly number[];

  /** In place: every rank ends with the reduction of every rank's buffer. */
  allReduce(buf: AnyCommBuffer, opts?: ReduceOptions): Work;
  /** `input` holds size blocks of output's length; rank r gets the reduction of block r. */
  reduceScatter(output: AnyCommBuffer, input: AnyCommBuffer, opts?: ReduceOptions): Work;
  /** `output` holds size blocks of input's length, block r from rank r. */
  allGather(output: AnyCommBuffer, input: AnyCommBuffer, opts?: OpOptions): Work;
  broadcast(buf: AnyCommBuffer, opts: RootOptions): Work;
  /** Block q of `input` goes to rank q; block q of `output` comes from rank q (equal splits). */
  allToAll(output: AnyCommBuffer, input: AnyCommBuffer, opts?: OpOptions): Work;
  send(buf: AnyCommBuffer, opts: OpOptions & { dst: number }): Work;
  recv(buf: AnyCommBuffer, opts: RecvOptions): Work;
  barrier(opts?: OpOptions): Work;
  /**
   * Collective: a buffer of `bytes` that the backend can move without staging copies (on the cpu
   * backend, shared memory that every rank maps). Ops on views inside it take the zero-copy path
   * when every rank passes the same offset of its own region. Every rank must call it in the same order.
   */
  allocRegistered(bytes: number): Promise<ArrayBuffer>;
  /** Calls `fn` after each op finishes on this rank; returns a function that removes it. */
  addObserver(fn: CommObserver, opts?: ObserverOptions): () => void;
  /** Releases the group; in-flight ops fail. Not collective. */
  destroy(): Promise<void>;
}

/** Everything a backend needs to build one group. */
export interface GroupSpec {
  name: string;
  /** Global ranks of the members, in group-rank order. */
  ranks: readonly number[];
  /** This process's group rank. */
  rank: number;
  /** A store namespace private to this group. */
  store: import('./store/store.js').Store;
  timeoutMs: number;
}

export interface CommBackend {
  readonly name: string;
  /**
   * Devices whose memory this backend's groups read and write directly (nccl: ['cuda']). Buffers
   * on any other non-host device are staged through host copies by the comm layer. Default: none.
   */
  readonly deviceMemory?: readonly string[];
  createGroup(spec: GroupSpec): Promise<ProcessGroup>;
}
