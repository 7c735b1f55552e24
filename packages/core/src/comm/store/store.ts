// The Store contract (torch.distributed's Store): a small key-value map shared by every rank of a
// job, used for rendezvous (addresses, shared-memory segment names) and never for bulk data.

export interface Store {
  /** Sets `key` (overwriting) and wakes anyone waiting for it. */
  set(key: string, value: string | Uint8Array): Promise<void>;
  /** The value of `key`, waiting up to `timeoutMs` (the store's default) for it to be set. */
  get(key: string, timeoutMs?: number): Promise<Uint8Array>;
  /** Waits until every key exists. */
  wait(keys: readonly string[], timeoutMs?: number): Promise<void>;
  /** Adds `delta` to the integer at `key` (missing counts as 0) and returns the new value. */
  add(key: string, delta: number): Promise<number>;
  /**
   * Sets `key` to `desired` when its current value equals `expected` (a missing key matches an empty
   * `expected`); returns the value the key holds afterwards.
   */
  compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array>;
  /** Removes `key`; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** True when every key exists (does not wait). */
  check(keys: readonly string[]): Promise<boolean>;
  numKeys(): Promise<number>;
  readonly timeoutMs: number;
  close(): Promise<void>;
}

/** A view of a store whose keys all start with `prefix/` (torch's PrefixStore). */
export class PrefixStore implements Store {
  constructor(
    readonly prefix: string,
    private readonly inner: Store,
  ) {}
  private k(key: string): string {
    return `${this.prefix}/${key}`;
  }
  get timeoutMs(): number {
    return this.inner.timeoutMs;
  }
  set(key: string, value: string | Uint8Array): Promise<void> {
    return this.inner.set(this.k(key), value);
  }
  get(key: string, timeoutMs?: number): Promise<Uint8Array> {
    return this.inner.get(this.k(key), timeoutMs);
  }
  wait(keys: readonly string[], timeoutMs?: number): Promise<void> {
    return this.inner.wait(keys.map((k) => this.k(k)), timeoutMs);
  }
  add(key: string, delta: number): Promise<number> {
    return this.inner.add(this.k(key), delta);
  }
  compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array> {
    return this.inner.compareSet(this.k(key), expected, desired);
  }
  delete(key: string): Promise<boolean> {
    return this.inner.delete(this.k(key));
  }
  check(keys: readonly string[]): Promise<boolean> {
    return this.inner.check(keys.map((k) => this.k(k)));
  }
  numKeys(): Promise<number> {
    return this.inner.numKeys();
  }
  /** A prefix view does not own the connection; closing it does nothing. */
  async close(): Promise<void> {}
}
