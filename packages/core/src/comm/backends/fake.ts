// An in-process fake of a whole world: n ProcessGroups in one process that meet in a shared hub
// and compute with the TypeScript reference arithmetic. For engine and ZeRO tests that need
// several ranks without processes, and for failure paths: `fault` can make any rank's op fail or
// never arrive. Semantics match the cpu backend (headers checked, timeouts name missing ranks, a
// failed group refuses further work).
import { DSCommError, DSTimeoutError } from '../../errors.js';
import { Observers } from '../observers.js';
import { referenceReduce } from '../reference.js';
import type { CommArray, CommBuffer, CommObserver, CommOpName, ObserverOptions, OpOptions, ProcessGroup, ReduceOp, ReduceOptions, RootOptions, Work } from '../types.js';
import { checkBuffer, checkPair, checkRank, checkReduceOp } from '../validate.js';
import { PromiseWork } from '../work.js';

export interface FakeWorldOptions {
  /** Default per-op timeout; 30 s. */
  timeoutMs?: number;
  /** Called as each rank submits an op: 'hang' never arrives, an Error fails that rank's op. */
  fault?: (at: { rank: number; op: CommOpName; seq: number }) => 'hang' | Error | undefined;
}

interface Arrival {
  op: CommOpName;
  count: number;
  dtype: string;
  reduce: ReduceOp;
  root: number;
  input: CommBuffer | null;
  output: CommBuffer | null;
  resolve: () => void;
  reject: (e: Error) => void;
}

function copyOf(a: CommArray): CommArray {
  return a.slice() as CommArray;
}

class Hub {
  private readonly rounds = new Map<number, { arrivals: (Arrival | undefined)[]; timer: NodeJS.Timeout }>();
  private readonly mail = new Map<string, { arrival: Arrival; rank: number }[]>();
  failure: string | undefined;

  constructor(
    readonly name: string,
    readonly size: number,
  ) {}

  private fail(message: string, arrivals: (Arrival | undefined)[], timeout = false): void {
    this.failure ??= message;
    for (const a of arrivals) a?.reject(timeout ? new DSTimeoutError(message) : new DSCommError(message));
  }

  arrive(rank: number, seq: number, a: Arrival, timeoutMs: number): void {
    const where = `${a.op} on group '${this.name}' (seq ${seq})`;
    if (this.failure) return a.reject(new DSCommError(`${where} failed: the group is unusable after an earlier failure (${this.failure})`));
    let round = this.rounds.get(seq);
    if (!round) {
      const arrivals: (Arrival | undefined)[] = new Array(this.size).fill(undefined);
      const timer = setTimeout(() => {
        this.rounds.delete(seq);
        const missing = arrivals.map((x, q) => (x ? -1 : q)).filter((q) => q >= 0);
        this.fail(`${where}: timed out after ${timeoutMs} ms waiting for peers; rank(s) ${missing.join(', ')} did not arrive`, arrivals, true);
      }, timeoutMs);
      round = { arrivals, timer };
      this.rounds.set(seq, round);
    }
    round.arrivals[rank] = a;
    if (round.arrivals.some((x) => !x)) return;
    clearTimeout(round.timer);
    this.rounds.delete(seq);
    const all = round.arrivals as Arrival[];
    const bad = all.findIndex((x) => x.op !== a.op || x.count !== a.count || x.dtype !== a.dtype || x.reduce !== a.reduce || x.root !== a.root);
    if (bad >= 0) {
      const b = all[bad]!, first = all[0]!;
      return this.fail(`${where} failed: rank ${bad} called ${b.op} with ${b.count} ${b.dtype} elements (root ${b.root}) where rank 0 called ${first.op} with ${first.count} ${first.dtype} elements (root ${first.root})`, all);
    }
    setImmediate(() => {
      compute(all, this.size);
      for (const x of all) x.resolve();
    });
  }

  post(src: number, dst: number, seqWhere: string, a: Arrival, sending: boolean): void {
    if (this.failure) return a.reject(new DSCommError(`${seqWhere} failed: the group is unusable after an earlier failure (${this.failure})`));
    const key = `${src}->${dst}`;
    const queue = this.mail.get(key) ?? [];
    this.mail.set(key, queue);
    const other = queue.findIndex((m) => (m.arrival.op === 'send') !== sending);
    if (other < 0) return void queue.push({ arrival: a, rank: sending ? src : dst });
    const [m] = queue.splice(other, 1);
    const send = sending ? a : m!.arrival, recv = sending ? m!.arrival : a;
    if (send.count !== recv.count || send.dtype !== recv.dtype) {
      return this.fail(`${seqWhere} failed: rank ${src} sent ${send.count} ${send.dtype} elements but rank ${dst} expected ${recv.count} ${recv.dtype}`, [send, recv]);
    }
    setImmediate(() => {
      recv.output!.array.set(send.input!.array);
      send.resolve();
      recv.resolve();
    });
  }
}

function compute(all: Arrival[], n: number): void {
  const a = all[0]!;
  const dtype = a.input?.dtype ?? 'u8';
  switch (a.op) {
    case 'allReduce': {
      const out = copyOf(a.input!.array);
      referenceReduce(dtype, a.reduce, all.map((x) => copyOf(x.input!.array)), out);
      for (const x of all) x.input!.array.set(out);
      break;
    }
    case 'reduceScatter': {
      const full = copyOf(a.input!.array);
      referenceReduce(dtype, a.reduce, all.map((x) => copyOf(x.input!.array)), full);
      const m = a.count;
      all.forEach((x, r) => x.output!.array.set(full.subarray(r * m, (r + 1) * m)));
      break;
    }
    case 'allGather': {
      const inputs = all.map((x) => copyOf(x.input!.array));
      for (const x of all) inputs.forEach((inp, q) => x.output!.array.set(inp, q * inp.length));
      break;
    }
    case 'broadcast': {
      const data = copyOf(all[a.root]!.input!.array);
      for (const x of all) x.input!.array.set(data);
      break;
    }
    case 'allToAll': {
      const inputs = all.map((x) => copyOf(x.input!.array));
      const m = a.count / n;
      all.forEach((x, r) => inputs.forEach((inp, q) => x.output!.array.set(inp.subarray(r * m, (r + 1) * m), q * m)));
      break;
    }
    default:
      break;
  }
}

class FakeProcessGroup implements ProcessGroup {
  readonly backend = 'fake';
  private seq = 0;
  private readonly p2pSeqs = new Map<string, number>();
  private readonly observers = new Observers();

  constructor(
    private readonly hub: Hub,
    readonly rank: number,
    readonly ranks: readonly number[],
    private readonly opts: FakeWorldOptions,
  ) {}

  get name(): string {
    return this.hub.name;
  }
  get size(): number {
    return this.ranks.length;
  }

  private run(op: CommOpName, opts: OpOptions | undefined, fields: Omit<Arrival, 'op' | 'resolve' | 'reject'>, peer?: number): Work {
    // As in the cpu backend: one sequence for collectives, one per channel for send/recv.
    const key = op === 'send' || op === 'recv' ? `${op}${peer}` : '';
    const seq = key ? (this.p2pSeqs.get(key) ?? 0) : this.seq++;
    if (key) this.p2pSeqs.set(key, seq + 1);
    const started = performance.now();
    const injected = this.opts.fault?.({ rank: this.rank, op, seq });
    const promise = new Promise<void>((resolve, reject) => {
      if (injected === 'hang') return;
      if (injected instanceof Error) {
        this.hub.failure ??= `rank ${this.rank}: ${injected.message}`;
        return reject(injected);
      }
      const arrival: Arrival = { op, ...fields, resolve, reject };
      const timeoutMs = opts?.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
      if (op === 'send') this.hub.post(this.rank, peer!, `send on group '${this.name}' (seq ${seq})`, arrival, true);
      else if (op === 'recv') this.hub.post(peer!, this.rank, `recv on group '${this.name}' (seq ${seq})`, arrival, false);
      else this.hub.arrive(this.rank, seq, arrival, timeoutMs);
    });
    const bytes = (fields.input ?? fields.output)?.array.byteLength ?? 0;
    const dtype = (fields.input ?? fields.output)?.dtype ?? 'u8';
    const emit = (ok: boolean): void => {
      if (!this.observers.empty) this.observers.emit({ op, group: this.name, groupSize: this.size, seq, dtype, bytes, latencyMs: performance.now() - started, ok });
    };
    return new PromiseWork(op, seq, promise.then(() => emit(true), (e: unknown) => (emit(false), Promise.reject(e))));
  }

  allReduce(buf: CommBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    checkBuffer('allReduce', 'buffer', buf);
    checkReduceOp('allReduce', reduce, buf.dtype);
    return this.run('allReduce', opts, { count: buf.array.length, dtype: buf.dtype, reduce, root: 0, input: buf, output: buf });
  }
  reduceScatter(output: CommBuffer, input: CommBuffer, opts?: ReduceOptions): Work {
    const reduce = opts?.op ?? 'sum';
    checkPair('reduceScatter', output, input, this.size, this.rank);
    checkReduceOp('reduceScatter', reduce, output.dtype);
    return this.run('reduceScatter', opts, { count: output.array.length, dtype: output.dtype, reduce, root: 0, input, output });
  }
  allGather(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    checkPair('allGather', output, input, this.size, this.rank);
    return this.run('allGather', opts, { count: input.array.length, dtype: input.dtype, reduce: 'sum', root: 0, input, output });
  }
  broadcast(buf: CommBuffer, opts: RootOptions): Work {
    checkBuffer('broadcast', 'buffer', buf);
    checkRank('broadcast', 'root', opts?.root, this.size);
    return this.run('broadcast', opts, { count: buf.array.length, dtype: buf.dtype, reduce: 'sum', root: opts.root, input: buf, output: buf });
  }
  allToAll(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    checkPair('allToAll', output, input, this.size, this.rank);
    return this.run('allToAll', opts, { count: input.array.length, dtype: input.dtype, reduce: 'sum', root: 0, input, output });
  }
  send(buf: CommBuffer, opts: OpOptions & { dst: number }): Work {
    checkBuffer('send', 'buffer', buf);
    checkRank('send', 'dst', opts?.dst, this.size, this.rank);
    return this.run('send', opts, { count: buf.array.length, dtype: buf.dtype, reduce: 'sum', root: 0, input: buf, output: null }, opts.dst);
  }
  recv(buf: CommBuffer, opts: OpOptions & { src: number }): Work {
    checkBuffer('recv', 'buffer', buf);
    checkRank('recv', 'src', opts?.src, this.size, this.rank);
    return this.run('recv', opts, { count: buf.array.length, dtype: buf.dtype, reduce: 'sum', root: 0, input: null, output: buf }, opts.src);
  }
  barrier(opts?: OpOptions): Work {
    return this.run('barrier', opts, { count: 0, dtype: 'u8', reduce: 'sum', root: 0, input: null, output: null });
  }
  async allocRegistered(bytes: number): Promise<ArrayBuffer> {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new DSCommError(`allocRegistered: bytes must be a positive integer (got ${String(bytes)})`);
    return new ArrayBuffer(bytes);
  }
  addObserver(fn: CommObserver, opts?: ObserverOptions): () => void {
    return this.observers.add(fn, opts);
  }
  async destroy(): Promise<void> {}
}

/**
 * n fake ranks in this process; `groups[r]` is rank r's world group. `subgroup(ranks)` makes a
 * group over some of them (returned in the order of `ranks`).
 */
export class FakeWorld {
  readonly groups: ProcessGroup[];
  private subgroups = 0;

  constructor(
    readonly size: number,
    private readonly opts: FakeWorldOptions = {},
  ) {
    const hub = new Hub('world', size);
    const ranks = Array.from({ length: size }, (_, r) => r);
    this.groups = ranks.map((r) => new FakeProcessGroup(hub, r, ranks, opts));
  }

  subgroup(ranks: readonly number[]): ProcessGroup[] {
    const hub = new Hub(`group[${ranks.join(',')}]#${this.subgroups++}`, ranks.length);
    return ranks.map((_, i) => new FakeProcessGroup(hub, i, ranks, this.opts));
  }
}
