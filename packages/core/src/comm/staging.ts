// Device buffers on a host-memory backend: staging copies around each op.
//
// The cpu and mpi backends move host memory. When a buffer is a DeviceArray (a sim or cuda tensor's
// operand()) and the backend does not read that device's memory itself (CommBackend.deviceMemory),
// the group copies the buffer's elements to a host twin before the op (through the device backend's
// copyToHost) and copies the result back when the op completes (copyFromHost), exactly once, on
// whichever of wait(), waitSync() or isCompleted() sees the completion first. This is what gloo does
// with CUDA tensors; NCCL needs no staging.

import { DeviceArray, DSDeviceError, getRuntime, type DeviceBackend, type HostArray, type Runtime } from '@ds/tensor';

import type { AnyCommBuffer, CommBuffer, OpOptions, ProcessGroup, ReduceOptions, RootOptions, Work } from './types.js';

function twin(a: DeviceArray): HostArray {
  switch (a.kind) {
    case 'f32':
      return new Float32Array(a.length);
    case 'u16':
      return new Uint16Array(a.length);
    case 'i32':
      return new Int32Array(a.length);
    default:
      return new Uint8Array(a.length);
  }
}

/** One op's staged buffers: host twins to hand the backend, and the copies back after completion. */
class Stage {
  private readonly backs: (() => void)[] = [];
  constructor(private readonly device: (name: string) => DeviceBackend) {}

  /** `buf` as a host buffer; `read`: copy the device elements in first; `write`: copy the result back on completion. */
  host(buf: AnyCommBuffer, read: boolean, write: boolean): CommBuffer {
    const a = buf.array;
    if (!(a instanceof DeviceArray)) return buf as CommBuffer;
    const dev = this.device(a.device);
    const h = twin(a);
    if (read) dev.copyToHost(a, h);
    if (write) this.backs.push(() => dev.copyFromHost(h, a));
    return { dtype: buf.dtype, array: h };
  }

  work(inner: Work): Work {
    if (this.backs.length === 0) return inner;
    let copied = false;
    const finish = (): void => {
      if (copied) return;
      copied = true;
      for (const back of this.backs) back();
    };
    const wait = (): Promise<void> => inner.wait().then(finish);
    const work: Work = {
      op: inner.op,
      seq: inner.seq,
      wait,
      then: (onFulfilled, onRejected) => wait().then(onFulfilled, onRejected),
      isCompleted: () => {
        if (!inner.isCompleted()) return false;
        finish();
        return true;
      },
      ...(inner.waitSync
        ? {
            waitSync: (timeoutMs?: number) => {
              inner.waitSync!(timeoutMs);
              finish();
            },
          }
        : {}),
    };
    return work;
  }
}

/**
 * `group` with staging for device buffers on devices the backend does not read itself. Returns the
 * group unchanged when the backend reads every device's memory; host buffers always pass straight through.
 */
export function withDeviceStaging(group: ProcessGroup, deviceMemory: readonly string[] = [], runtime: () => Runtime = getRuntime): ProcessGroup {
  const device = (name: string): DeviceBackend => {
    if (deviceMemory.includes(name)) throw new DSDeviceError(`comm staging: device '${name}' is read by the '${group.backend}' backend directly; this is a bug in the staging wrapper`);
    return runtime().device(name);
  };
  const direct = (b: AnyCommBuffer) => !(b.array instanceof DeviceArray) || deviceMemory.includes(b.array.device);
  const run = (bufs: AnyCommBuffer[], go: (s: Stage) => Work): Work => (bufs.every(direct) ? go(new Stage(device)) : stagedRun(go));
  const stagedRun = (go: (s: Stage) => Work): Work => {
    const s = new Stage(device);
    return s.work(go(s));
  };
  const pick = (s: Stage, b: AnyCommBuffer, read: boolean, write: boolean): AnyCommBuffer => (direct(b) ? b : s.host(b, read, write));
  const ops: Partial<ProcessGroup> = {
    allReduce: (buf, opts?: ReduceOptions) => run([buf], (s) => group.allReduce(pick(s, buf, true, true), opts)),
    reduceScatter: (output, input, opts?: ReduceOptions) => run([output, input], (s) => group.reduceScatter(pick(s, output, false, true), pick(s, input, true, false), opts)),
    allGather: (output, input, opts?: OpOptions) => run([output, input], (s) => group.allGather(pick(s, output, false, true), pick(s, input, true, false), opts)),
    broadcast: (buf, opts: RootOptions) => run([buf], (s) => group.broadcast(pick(s, buf, group.rank === opts.root, true), opts)),
    allToAll: (output, input, opts?: OpOptions) => run([output, input], (s) => group.allToAll(pick(s, output, false, true), pick(s, input, true, false), opts)),
    send: (buf, opts) => run([buf], (s) => group.send(pick(s, buf, true, false), opts)),
    recv: (buf, opts) => run([buf], (s) => group.recv(pick(s, buf, false, true), opts)),
  };
  // Everything else (name, rank, barrier, observers, a backend's own extras) is the group's own.
  const wrapped = new Proxy(group, {
    get(target, key, receiver) {
      if (typeof key === 'string' && Object.hasOwn(ops, key)) return ops[key as keyof typeof ops];
      const v = Reflect.get(target, key, receiver) as unknown;
      return typeof v === 'function' && key !== 'constructor' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return wrapped;
}
