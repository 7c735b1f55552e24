// The reference twin of the native engine: the same IoEngine contract with plain fs.readSync /
// fs.writeSync on the calling thread, every transfer complete when it returns. Tests compare the
// engine's bytes with it; it is the specification of what a read or a write does.
import { closeSync, ftruncateSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

import { DSUnsupportedError, type OffloadWork } from '@ds/core';

import type { AioFile, IoEngine } from '../engine.js';
import { DSIOError } from '../errors.js';

const DONE: OffloadWork = { wait: async () => {}, waitSync: () => {}, isCompleted: () => true };

function failed(err: DSIOError): OffloadWork {
  const rejected = Promise.reject(err);
  rejected.catch(() => {});
  return { wait: () => rejected, waitSync: () => { throw err; }, isCompleted: () => true };
}

interface RefFile extends AioFile {
  readonly fd: number;
}

function sysError(e: unknown, kind: string, path: string, offset: number): DSIOError {
  const err = e as NodeJS.ErrnoException;
  return new DSIOError(`reference ${kind} on ${path} at offset ${offset}: ${err.code ?? err.message}`, { path, offset, errno: -(err.errno ?? 0) || 5, reason: err.code ?? 'EIO', what: kind }, { cause: e });
}

export class ReferenceIo implements IoEngine {
  readonly backend = 'reference';
  private readonly files = new Set<RefFile>();

  open(path: string, opts: { write?: boolean; create?: boolean; direct?: boolean } = {}): AioFile {
    const flags = opts.write ? (opts.create ? 'w+' : 'r+') : 'r';
    let fd: number;
    try {
      // 'w+' would truncate: create without truncating, then reopen read-write.
      if (opts.create) closeSync(openSync(path, 'a'));
      fd = openSync(path, flags === 'w+' ? 'r+' : flags);
    } catch (e) {
      throw sysError(e, 'open', path, 0);
    }
    const f: RefFile = { path, fd, direct: false, directErrno: 0 };
    this.files.add(f);
    return f;
  }

  private fd(f: AioFile): number {
    if (!this.files.has(f as RefFile)) throw new DSUnsupportedError(`reference io: ${f.path} is not open here`);
    return (f as RefFile).fd;
  }

  reserve(f: AioFile, bytes: number): void {
    const fd = this.fd(f);
    if (fstatSync(fd).size < bytes) ftruncateSync(fd, bytes);
  }

  read(f: AioFile, dst: Uint8Array, offset: number): OffloadWork {
    const fd = this.fd(f);
    let done = 0;
    try {
      while (done < dst.byteLength) {
        const n = readSync(fd, dst, done, dst.byteLength - done, offset + done);
        if (n === 0) return failed(new DSIOError(`reference read on ${f.path} at offset ${offset + done}: end of file`, { path: f.path, offset: offset + done, errno: 61, reason: 'ENODATA', what: 'short read at end of file' }));
        done += n;
      }
    } catch (e) {
      return failed(sysError(e, 'read', f.path, offset + done));
    }
    return DONE;
  }

  write(f: AioFile, src: Uint8Array, offset: number): OffloadWork {
    const fd = this.fd(f);
    let done = 0;
    try {
      while (done < src.byteLength) done += writeSync(fd, src, done, src.byteLength - done, offset + done);
    } catch (e) {
      return failed(sysError(e, 'write', f.path, offset + done));
    }
    return DONE;
  }

  closeFile(f: AioFile): void {
    closeSync(this.fd(f));
    this.files.delete(f as RefFile);
  }

  close(): void {
    for (const f of this.files) closeSync(f.fd);
    this.files.clear();
  }
}
