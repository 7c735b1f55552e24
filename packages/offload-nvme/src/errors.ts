// The typed failure of a transfer: which file, where in it, and the errno the kernel gave.
import { DSError, isDSError, type DSErrorOptions } from '@ds/core';

export interface IoFailure {
  readonly path: string;
  /** Byte offset in the file where the failing transfer started. */
  readonly offset: number;
  /** errno (0 for a timeout). */
  readonly errno: number;
  /** strerror(errno). */
  readonly reason: string;
  /** The call that failed (pwrite, io_uring read, short read at end of file, ...). */
  readonly what: string;
}

/** A read or write that failed (or timed out) on a tier's file; `failure` names file, offset and errno. */
export class DSIOError extends DSError {
  readonly failure: IoFailure;
  constructor(message: string, failure: IoFailure, options: DSErrorOptions = {}) {
    super(message, { code: failure.errno === 0 ? 'DS_IO_TIMEOUT' : 'DS_IO', ...options });
    this.failure = failure;
  }
}

const HINTS: Readonly<Record<string, string>> = {
  ENOSPC: 'the file system is full: free space under that path or point nvme_path at a larger disk',
  EIO: 'the device reported an I/O error: check the disk (dmesg) and resume from the last checkpoint',
  EACCES: 'the process may not access the file: check its permissions',
  ENODATA: 'the file is shorter than the transfer: it was truncated or replaced while in use',
};

/** The DSIOError for a native error record. */
export function ioError(kind: 'read' | 'write', bytes: number, f: IoFailure): DSIOError {
  const code = Object.entries({ ENOSPC: 28, EIO: 5, EACCES: 13, ENODATA: 61 }).find(([, n]) => n === f.errno)?.[0];
  const hint = (code && HINTS[code]) ?? 'check the disk and the path, then resume from the last checkpoint';
  return new DSIOError(`aio ${kind} of ${bytes} B failed on ${f.path} at offset ${f.offset}: ${f.what}: errno ${f.errno} (${f.reason}); ${hint}`, f);
}

/** A DSIOError from any copy of this package (by its code and its failure record, not instanceof). */
export function isDSIOError(e: unknown): e is DSIOError {
  return isDSError(e) && (e.code === 'DS_IO' || e.code === 'DS_IO_TIMEOUT') && typeof (e as Partial<DSIOError>).failure === 'object';
}
