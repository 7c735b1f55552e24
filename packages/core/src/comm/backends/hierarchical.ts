// A group whose members sit on several hosts, some hosts holding more than one of them. allReduce
// runs in three stages: over shared memory inside each host, over TCP among one leader per host,
// and a shared-memory broadcast back, so only one rank per host puts data on the network. Every
// other op uses the flat TCP group over all members.
//
// Arithmetic: float sums are accumulated in f32 through all stages (bf16/f16 buffers are widened
// first) and rounded once at the end, as on one host; but the order is host by host, so results
// may differ in the last bit from the single-host order. All ranks still get identical bits.
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '@ds/tensor';

import { Observers } from '../observers.js';
import type { CommBuffer, CommObserver, ObserverOptions, OpOptions, ProcessGroup, ReduceOptions, RootOptions, Work } from '../types.js';
import { checkBuffer, checkReduceOp } from '../validate.js';
import { PromiseWork } from '../work.js';

export class HierarchicalProcessGroup implements ProcessGroup {
  readonly backend = 'cpu';
  private seq = 0;
  private tail: Promise<void> = Promise.resolve();
  private readonly observers = new Observers();

  constructor(
    private readonly flat: ProcessGroup,
    private readonly local: ProcessGroup,
    private readonly leaders: ProcessGroup | null,
  ) {}

  get name(): string {
    return this.flat.name;
  }
  get rank(): number {
    return this.flat.rank;
  }
  get size(): number {
    return this.flat.size;
  }
  get ranks(): readonly number[] {
    return this.flat.ranks;
  }

  allReduce(buf: CommBuffer, opts?: ReduceOptions): Work {
    const op = opts?.op ?? 'sum';
    checkBuffer('allReduce', 'buffer', buf);
    checkReduceOp('allReduce', op, buf.dtype);
    const seq = this.seq++;
    const caller = this.observers.wantCaller ? Observers.caller() : undefined;
    const started = performance.now();
    // Stages of successive allReduces must reach the subgroups in the same order on every rank.
    const run = this.tail.then(() => this.stages(buf, op, opts));
    this.tail = run.catch(() => undefined);
    const done = run.then(
      () => this.emit(seq, buf, performance.now() - started, true, caller),
      (err: unknown) => {
        this.emit(seq, buf, performance.now() - started, false, caller);
        throw err;
      },
    );
    return new PromiseWork('allReduce', seq, done);
  }

  private async stages(buf: CommBuffer, op: NonNullable<ReduceOptions['op']>, opts?: OpOptions): Promise<void> {
    const half = buf.dtype === 'bf16' || buf.dtype === 'f16';
    const toF32 = buf.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
    const work: CommBuffer = half ? { dtype: 'f32', array: Float32Array.from(buf.array as Uint16Array, (h) => toF32(h)) } : buf;
    const stageOp = op === 'avg' ? 'sum' : op;
    const t = opts?.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs };
    await this.local.allReduce(work, { op: stageOp, ...t });
    if (this.leaders) await this.leaders.allReduce(work, { op: stageOp, ...t });
    await this.local.broadcast(work, { root: 0, ...t });
    const a = work.array as Float32Array;
    if (op === 'avg') for (let i = 0; i < a.length; i++) a[i] = Math.fround(a[i]! / this.size);
    if (half) {
      const round = buf.dtype === 'bf16' ? f32ToBf16 : f32ToF16;
      const out = buf.array as Uint16Array;
      for (let i = 0; i < out.length; i++) out[i] = round(a[i]!);
    }
  }

  private emit(seq: number, buf: CommBuffer, latencyMs: number, ok: boolean, caller: string | undefined): void {
    if (this.observers.empty) return;
    this.observers.emit({ op: 'allReduce', group: this.name, groupSize: this.size, seq, dtype: buf.dtype, bytes: buf.array.byteLength, latencyMs, ok, caller });
  }

  reduceScatter(output: CommBuffer, input: CommBuffer, opts?: ReduceOptions): Work {
    return this.flat.reduceScatter(output, input, opts);
  }
  allGather(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    return this.flat.allGather(output, input, opts);
  }
  broadcast(buf: CommBuffer, opts: RootOptions): Work {
    return this.flat.broadcast(buf, opts);
  }
  allToAll(output: CommBuffer, input: CommBuffer, opts?: OpOptions): Work {
    return this.flat.allToAll(output, input, opts);
  }
  send(buf: CommBuffer, opts: OpOptions & { dst: number }): Work {
    return this.flat.send(buf, opts);
  }
  recv(buf: CommBuffer, opts: OpOptions & { src: number }): Work {
    return this.flat.recv(buf, opts);
  }
  barrier(opts?: OpOptions): Work {
    return this.flat.barrier(opts);
  }
  allocRegistered(bytes: number): Promise<ArrayBuffer> {
    return this.flat.allocRegistered(bytes);
  }

  addObserver(fn: CommObserver, opts?: ObserverOptions): () => void {
    const mine = this.observers.add(fn, opts);
    const flat = this.flat.addObserver(fn, opts);
    return () => {
      mine();
      flat();
    };
  }

  async destroy(): Promise<void> {
    await this.flat.destroy();
    await this.local.destroy();
    await this.leaders?.destroy();
  }
}
