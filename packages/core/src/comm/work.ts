// The Work handle every op returns.
import { DSUnsupportedError } from '@ds/tensor';

import type { CommOpName, Work } from './types.js';

/** How a backend lets the calling thread see or await completion without the event loop. */
export interface SyncCompletion {
  isDone(): boolean;
  /** Blocks until the op is over; throws its error. */
  waitSync(timeoutMs?: number): void;
}

export class PromiseWork implements Work {
  private settled = false;
  private error: unknown;
  private readonly promise: Promise<void>;

  constructor(
    readonly op: CommOpName,
    readonly seq: number,
    promise: Promise<void>,
    private readonly sync?: SyncCompletion,
  ) {
    this.promise = promise.then(
      () => {
        this.settled = true;
      },
      (err: unknown) => {
        this.settled = true;
        this.error = err;
        throw err;
      },
    );
    // The caller may never look at a failed op; that must not become an unhandled rejection here.
    this.promise.catch(() => undefined);
  }

  wait(): Promise<void> {
    return this.promise;
  }

  isCompleted(): boolean {
    return this.settled || (this.sync?.isDone() ?? false);
  }

  waitSync(timeoutMs?: number): void {
    if (this.settled) {
      if (this.error !== undefined) throw this.error;
      return;
    }
    if (!this.sync) {
      throw new DSUnsupportedError(`${this.op}: waitSync() is not supported by this group (its ops complete on the event loop); await the Work instead`);
    }
    this.sync.waitSync(timeoutMs);
  }

  then<T1 = void, T2 = never>(onfulfilled?: ((value: void) => T1 | PromiseLike<T1>) | null, onrejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null): Promise<T1 | T2> {
    return this.promise.then(onfulfilled, onrejected);
  }
}
