// The Work handle every op returns.
import type { CommOpName, Work } from './types.js';

export class PromiseWork implements Work {
  private done = false;
  private readonly promise: Promise<void>;

  constructor(
    readonly op: CommOpName,
    readonly seq: number,
    promise: Promise<void>,
  ) {
    this.promise = promise.then(() => {
      this.done = true;
    });
    this.promise.then(undefined, () => {
      this.done = true;
    });
  }

  wait(): Promise<void> {
    return this.promise;
  }

  isCompleted(): boolean {
    return this.done;
  }

  then<T1 = void, T2 = never>(onfulfilled?: ((value: void) => T1 | PromiseLike<T1>) | null, onrejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null): Promise<T1 | T2> {
    return this.promise.then(onfulfilled, onrejected);
  }
}

/** A Work that failed before it started (validation errors are thrown, not returned, so this is rare). */
export function failedWork(op: CommOpName, seq: number, err: Error): Work {
  return new PromiseWork(op, seq, Promise.reject(err));
}
