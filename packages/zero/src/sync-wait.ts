// Waiting for a collective from synchronous code (autograd hooks, module hooks).
//
// A Work resolves on the JS event loop, which never runs while backward or a forward hook is on
// the stack, so a hook cannot await. ZeRO needs to: stage 3 must have a module's parameters before
// its forward runs, and stage 2 must know a bucket's reduction has finished before reusing its
// buffer. The group runs its collectives one after another on one executor thread, so we follow
// each tracked op with a tiny all-gather of "done" flags: when every rank's flag has landed in our
// buffer, the op before it has finished here too. Reading the flags with Atomics.load keeps the
// read from being hoisted out of the loop; between polls the thread sleeps briefly (Atomics.wait on
// a private SharedArrayBuffer), leaving the core to the comm thread.
//
// The proper fix is a blocking `Work.waitSync()` in @ds/core's native comm (see README); this shim
// only relies on what the ProcessGroup contract already promises plus in-order execution.
import { DSTimeoutError, type ProcessGroup, type Work } from '@ds/core';

const SLEEP_MS = 0.02;
/** DeepSpeed's default collective timeout (30 min is torch's; ours follows DS_COMM_TIMEOUT's 300 s). */
const DEFAULT_TIMEOUT_MS = 300_000;

export class Ticket {
  private finished = false;
  constructor(
    readonly work: Work,
    private readonly flags: Int32Array,
    private readonly flagWork: Work,
    private readonly what: string,
  ) {}

  /** True once the op has completed on this rank (without yielding to the event loop). */
  done(): boolean {
    if (this.finished) return true;
    for (let i = 0; i < this.flags.length; i++) if (Atomics.load(this.flags, i) !== 1) return false;
    this.finished = true;
    return true;
  }

  /** Blocks the thread until done; a failed or stuck op surfaces as a timeout here and as its error in `wait()`. */
  waitSync(timeoutMs = DEFAULT_TIMEOUT_MS): void {
    if (this.done()) return;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const deadline = Date.now() + timeoutMs;
    while (!this.done()) {
      if (Date.now() > deadline) throw new DSTimeoutError(`ZeRO: ${this.what} did not finish within ${timeoutMs} ms (waited synchronously from a hook)`);
      Atomics.wait(sleeper, 0, 0, SLEEP_MS);
    }
  }

  /** Resolves when both the op and its flag exchange have settled (errors propagate). */
  async wait(): Promise<void> {
    await this.work.wait();
    await this.flagWork.wait();
    this.finished = true;
  }
}

/** Starts `start()` on `group` and the flag exchange right behind it. */
export function tracked(group: ProcessGroup, what: string, start: () => Work): Ticket {
  const work = start();
  const flags = new Int32Array(group.size);
  const mine = Int32Array.of(1);
  const flagWork = group.allGather({ dtype: 'i32', array: flags }, { dtype: 'i32', array: mine });
  return new Ticket(work, flags, flagWork, what);
}
