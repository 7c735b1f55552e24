// The async I/O engine as TypeScript sees it (DeepSpeed's aio_handle): open files, submit reads and
// writes of byte ranges, and get back handles with core's OffloadWork shape (wait, waitSync,
// isCompleted). The transfers run on native I/O threads: io_uring through raw syscalls, or a
// pread/pwrite thread pool where io_uring is refused or DS_AIO_BACKEND=threads forces it.
import { DSConfigError, DSUnsupportedError, type OffloadWork } from '@ds/core';

import { AIO_DEFAULTS, type AioConfig } from './aio-config.js';
import { readOffloadEnv, type AioBackendChoice } from './env.js';
import { ioError, DSIOError } from './errors.js';
import { loadAioAddon, type NativeAioEngine, type NativeIoError } from './native/load.js';

export interface AioOptions {
  blockSize?: number;
  queueDepth?: number;
  /** intra_op_parallelism: I/O threads one transfer is split over. */
  threads?: number;
  singleSubmit?: boolean;
  overlapEvents?: boolean;
  /** Default: DS_AIO_BACKEND, else 'auto'. */
  backend?: AioBackendChoice;
  /** How long waitSync()/wait() may block on one transfer (default DS_AIO_TIMEOUT_MS, 10 minutes). */
  timeoutMs?: number;
}

/** The engine options of an `aio` section. */
export function aioOptionsOf(aio: AioConfig): AioOptions {
  return { blockSize: aio.block_size, queueDepth: aio.queue_depth, threads: aio.intra_op_parallelism, singleSubmit: aio.single_submit, overlapEvents: aio.overlap_events };
}

/** A file open in an engine. */
export interface AioFile {
  readonly path: string;
  /** Whether aligned transfers bypass the page cache (O_DIRECT). */
  readonly direct: boolean;
  /** errno of the O_DIRECT open when it was asked for and refused (EINVAL on tmpfs), else 0. */
  readonly directErrno: number;
}

/** What both the native engine and its reference twin offer the tiers and ds-io. */
export interface IoEngine {
  readonly backend: string;
  open(path: string, opts?: { write?: boolean; create?: boolean; direct?: boolean }): AioFile;
  /** Gives the file `bytes` of allocated space; throws DSIOError (ENOSPC) when the disk cannot hold them. */
  reserve(file: AioFile, bytes: number): void;
  read(file: AioFile, dst: Uint8Array, offset: number): OffloadWork;
  write(file: AioFile, src: Uint8Array, offset: number): OffloadWork;
  closeFile(file: AioFile): void;
  close(): void;
}

const ERRNO_NAMES: Readonly<Record<number, string>> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 22: 'EINVAL', 28: 'ENOSPC', 30: 'EROFS', 38: 'ENOSYS' };
export const errnoName = (e: number): string => ERRNO_NAMES[e] ?? `errno ${e}`;

/** One transfer in flight on the native engine. */
class AioWork implements OffloadWork {
  private error: DSIOError | null = null;
  private settled = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly engine: NativeAioEngine,
    private readonly id: number,
    promise: Promise<void>,
    private readonly kind: 'read' | 'write',
    private readonly bytes: number,
    private readonly path: string,
    private readonly offset: number,
    private readonly timeoutMs: number,
  ) {
    // Settles once; rejections are kept so that waitSync() callers that never await leave no unhandled rejection.
    this.done = promise.then(
      () => {
        this.settled = true;
      },
      (rec: NativeIoError) => {
        this.settled = true;
        this.error = this.toError(rec);
      },
    );
  }

  private toError(rec: NativeIoError): DSIOError {
    return ioError(this.kind, this.bytes, { path: rec.path, offset: rec.offset, errno: rec.errno, reason: rec.code, what: rec.what });
  }

  private timeout(): DSIOError {
    return new DSIOError(
      `aio ${this.kind} of ${this.bytes} B on ${this.path} at offset ${this.offset} did not finish within ${this.timeoutMs} ms; the disk may be stalled (raise DS_AIO_TIMEOUT_MS if it is just slow)`,
      { path: this.path, offset: this.offset, errno: 0, reason: 'timeout', what: this.kind },
    );
  }

  isCompleted(): boolean {
    return this.settled || this.engine.isDone(this.id);
  }

  async wait(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.timeoutMs);
      timer.unref();
    });
    const r = await Promise.race([this.done, expired]);
    clearTimeout(timer);
    if (r === 'timeout') throw this.timeout();
    if (this.error) throw this.error;
  }

  waitSync(): void {
    if (this.settled) {
      if (this.error) throw this.error;
      return;
    }
    const rec = this.engine.waitSync(this.id, this.timeoutMs);
    if (rec === 'timeout') throw this.timeout();
    if (rec) {
      this.error = this.toError(rec);
      throw this.error;
    }
  }
}

interface OpenFile extends AioFile {
  readonly id: number;
  readonly writable: boolean;
}

function checkRange(what: string, file: AioFile, buf: Uint8Array, offset: number): void {
  if (!(buf instanceof Uint8Array)) throw new DSUnsupportedError(`aio ${what} on ${file.path}: the buffer must be a Uint8Array (use bytesOf() for a Float32Array)`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new DSConfigError(`aio ${what} on ${file.path}: offset ${offset} must be a non-negative integer`);
}

/** The native engine (io_uring, or the thread pool). */
export class AioEngine implements IoEngine {
  private readonly native: NativeAioEngine;
  private readonly timeoutMs: number;
  private readonly open_ = new Set<OpenFile>();
  private closed = false;
  readonly options: Required<Omit<AioOptions, 'timeoutMs'>>;
  /** Why io_uring is not in use when it was allowed ('' when it is). */
  readonly fallbackReason: string;

  constructor(opts: AioOptions = {}) {
    const env = readOffloadEnv();
    this.options = {
      blockSize: opts.blockSize ?? AIO_DEFAULTS.block_size,
      queueDepth: opts.queueDepth ?? AIO_DEFAULTS.queue_depth,
      threads: opts.threads ?? AIO_DEFAULTS.intra_op_parallelism,
      singleSubmit: opts.singleSubmit ?? AIO_DEFAULTS.single_submit,
      overlapEvents: opts.overlapEvents ?? AIO_DEFAULTS.overlap_events,
      backend: opts.backend ?? env.aioBackend,
    };
    this.timeoutMs = opts.timeoutMs ?? env.aioTimeoutMs;
    const o = this.options;
    if (!Number.isInteger(o.blockSize) || o.blockSize < 4096 || o.blockSize % 4096 !== 0 || o.blockSize > 2 ** 30) {
      throw new DSConfigError(`aio.block_size ${o.blockSize} must be a multiple of 4096 (the O_DIRECT alignment) between 4 KiB and 1 GiB`);
    }
    if (!Number.isInteger(o.queueDepth) || o.queueDepth < 1 || o.queueDepth > 1024) throw new DSConfigError(`aio.queue_depth ${o.queueDepth} must be an integer in 1..1024`);
    if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 64) throw new DSConfigError(`aio.intra_op_parallelism ${o.threads} must be an integer in 1..64`);
    const addon = loadAioAddon();
    this.native = new addon.AioEngine(o.blockSize, o.queueDepth, o.threads, o.singleSubmit, o.overlapEvents, o.backend !== 'threads');
    const refused = this.native.uringErrno();
    this.fallbackReason = o.backend === 'threads' ? 'DS_AIO_BACKEND=threads' : refused ? `io_uring_setup failed: ${errnoName(refused)}` : '';
    if (o.backend === 'io_uring' && this.native.backend() !== 'io_uring') {
      this.native.close();
      throw new DSUnsupportedError(`DS_AIO_BACKEND=io_uring, but the kernel refused io_uring (${errnoName(refused)}; seccomp or kernel.io_uring_disabled); use DS_AIO_BACKEND=auto to fall back to the pread/pwrite thread pool`);
    }
  }

  get backend(): 'io_uring' | 'threads' {
    return this.native.backend();
  }

  private live(): void {
    if (this.closed) throw new DSUnsupportedError('aio: the engine is closed; create a new AioEngine');
  }

  open(path: string, opts: { write?: boolean; create?: boolean; direct?: boolean } = {}): AioFile {
    this.live();
    const write = opts.write ?? false;
    const [id, err, directErrno] = this.native.open(path, write, opts.create ?? false, opts.direct ?? true);
    if (id < 0) {
      throw new DSIOError(`aio: cannot open ${path} for ${write ? 'writing' : 'reading'}: ${errnoName(err)}`, { path, offset: 0, errno: err, reason: errnoName(err), what: 'open' });
    }
    const f: OpenFile = { path, id, direct: (opts.direct ?? true) && directErrno === 0, directErrno, writable: write };
    this.open_.add(f);
    return f;
  }

  private file(f: AioFile): OpenFile {
    if (!this.open_.has(f as OpenFile)) throw new DSUnsupportedError(`aio: ${f.path} is not open in this engine`);
    return f as OpenFile;
  }

  reserve(f: AioFile, bytes: number): void {
    this.live();
    const e = this.native.reserve(this.file(f).id, bytes);
    if (e !== 0) throw new DSIOError(`aio: cannot reserve ${bytes} B for ${f.path}: ${errnoName(e)}`, { path: f.path, offset: 0, errno: e, reason: errnoName(e), what: 'fallocate' });
  }

  read(f: AioFile, dst: Uint8Array, offset: number): OffloadWork {
    this.live();
    checkRange('read', f, dst, offset);
    const [p, id] = this.native.submit(0, this.file(f).id, dst, offset);
    return new AioWork(this.native, id, p, 'read', dst.byteLength, f.path, offset, this.timeoutMs);
  }

  write(f: AioFile, src: Uint8Array, offset: number): OffloadWork {
    this.live();
    checkRange('write', f, src, offset);
    const of = this.file(f);
    if (!of.writable) throw new DSUnsupportedError(`aio write on ${f.path}: the file was opened for reading; open it with { write: true }`);
    const [p, id] = this.native.submit(1, of.id, src, offset);
    return new AioWork(this.native, id, p, 'write', src.byteLength, f.path, offset, this.timeoutMs);
  }

  closeFile(f: AioFile): void {
    const of = this.file(f);
    this.open_.delete(of);
    this.native.closeFile(of.id);
  }

  /** Finishes queued transfers, joins the I/O threads and closes the files. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const f of this.open_) this.native.closeFile(f.id);
    this.open_.clear();
    this.native.close();
  }
}

/** `bytes` of zeroed memory at a 4096-byte-aligned address: O_DIRECT transfers from it need no bounce copy. */
export function allocAligned(bytes: number): Uint8Array {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new DSConfigError(`allocAligned: ${bytes} is not a byte count`);
  return new Uint8Array(loadAioAddon().allocAligned(bytes));
}
