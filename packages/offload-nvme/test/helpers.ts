// Shared by this package's tests: scratch directories on a disk file system, and whether io_uring runs here.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AioEngine } from '../src/index.js';

/** A fresh directory under the OS temp dir (ext4 on the CI machines: O_DIRECT works there). */
export function scratchDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `ds-offload-${tag}-`));
}

/** '' when io_uring can be set up here, else the reason (the io_uring cases are skipped with it). */
export function uringRefused(): string {
  const e = new AioEngine({ backend: 'auto', queueDepth: 1, blockSize: 4096 });
  const why = e.backend === 'io_uring' ? '' : `io_uring refused here (${e.fallbackReason})`;
  e.close();
  return why;
}
