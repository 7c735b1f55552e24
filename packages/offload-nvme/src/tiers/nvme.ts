// The `nvme` tier (ZeRO-Infinity's swap files, DeepSpeed's runtime/swap_tensor): one file per rank
// and offload kind under nvme_path, regions as 4096-aligned extents of it, moved by the async I/O
// engine (io_uring, O_DIRECT). DeepSpeed keeps one file per swapped tensor; one file per rank keeps
// the descriptors and the fallocate calls few, and an extent map does the same bookkeeping.
//
// Before any work it checks nvme_path: set, an existing directory, not in memory (tmpfs, ramfs: on
// kernels before 6.6 tmpfs also refuses O_DIRECT), writable, on a file system with O_DIRECT, and, at each allocation, with the free bytes the region needs; each
// failure is a DSConfigError naming the path and the numbers. I/O failures mid-swap are DSIOErrors
// naming file, offset and errno.
import { existsSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';

import { DSConfigError, type OffloadRegion, type OffloadStats, type OffloadTier, type OffloadTierOptions, type OffloadWork } from '@ds/core';

import { allocAligned, errnoName, type AioFile, type IoEngine } from '../engine.js';
import { isDSIOError } from '../errors.js';
import { alignUp, ExtentMap } from './extents.js';
import { removeStaleSwapFiles, swapFileName } from './swap-files.js';

export interface NvmeTierArgs {
  readonly options: OffloadTierOptions;
  readonly rank: number;
  readonly io: IoEngine;
  readonly log: (level: 'debug' | 'info' | 'warn', message: string) => void;
}

const MEMORY_FS: Readonly<Record<number, string>> = { 0x01021994: 'tmpfs', 0x858458f6: 'ramfs' };

/** 'tmpfs' or 'ramfs' when `dir` is on a file system held in memory, else ''. */
export function memoryFileSystem(dir: string): string {
  return MEMORY_FS[Number(statfsSync(dir).type)] ?? '';
}

/** Free bytes for an unprivileged writer under `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

export class NvmeTier implements OffloadTier {
  readonly name = 'nvme';
  readonly path: string;
  private readonly file: AioFile;
  private readonly extents = new ExtentMap('nvme');
  private readonly pending = new Set<OffloadWork>();
  private readonly st: OffloadStats = { regions: 0, bytesReserved: 0, bytesWritten: 0, bytesRead: 0, swapOuts: 0, swapIns: 0 };
  private readonly onExit: () => void;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly key: string,
    private readonly io: IoEngine,
    file: AioFile,
  ) {
    this.file = file;
    this.path = file.path;
    // A normal end removes the file even when nobody awaits close() (the engine's destroy does not).
    this.onExit = () => this.removeFile();
    process.once('exit', this.onExit);
  }

  /** Checks nvme_path, removes stale swap files of killed runs, and opens this rank's swap file. */
  static create(args: NvmeTierArgs): NvmeTier {
    const key = `zero_optimization.offload_${args.options.kind}.nvme_path`;
    const raw = args.options.section.nvme_path;
    if (typeof raw !== 'string' || raw === '') {
      throw new DSConfigError(`${key} is not set: offload device 'nvme' needs a directory on a local disk with O_DIRECT support (e.g. "/local_nvme")`);
    }
    const dir = resolve(raw);
    if (!existsSync(dir)) throw new DSConfigError(`${key} ${dir} does not exist: create it (mkdir -p ${dir}) or point ${key} at an existing directory on a local disk`);
    if (!statSync(dir).isDirectory()) throw new DSConfigError(`${key} ${dir} is not a directory: point it at a directory on a local disk`);
    const fsType = memoryFileSystem(dir);
    if (fsType) {
      throw new DSConfigError(
        `${key} ${dir} is on ${fsType}, which keeps its files in memory: swapping there saves no memory. ` +
          "Point it at a directory on a disk (ext4, xfs), or use offload device 'cpu' to keep the state in host memory",
      );
    }
    for (const s of removeStaleSwapFiles(dir)) {
      args.log('warn', `offload: removed stale swap file ${s.path} (rank ${s.rank} of a run whose process ${s.pid} is gone); swap files are scratch, checkpoints live elsewhere`);
    }
    const path = resolve(dir, swapFileName(args.options.kind, args.rank));
    let file: AioFile;
    try {
      file = args.io.open(path, { write: true, create: true, direct: true });
    } catch (e) {
      if (!isDSIOError(e)) throw e;
      throw new DSConfigError(`${key} ${dir} is not writable (${e.failure.reason} creating ${path}): give the process write permission or choose another directory`, [], { cause: e });
    }
    if (args.io.backend !== 'reference' && !file.direct) {
      args.io.closeFile(file);
      unlinkSync(path);
      throw new DSConfigError(
        `${key} ${dir} is on a file system without O_DIRECT (${errnoName(file.directErrno)} opening ${path} with O_DIRECT): ` +
          "point it at a directory on a disk (ext4, xfs), or use offload device 'cpu' to keep the state in memory",
      );
    }
    return new NvmeTier(dir, key, args.io, file);
  }

  allocate(bytes: number, label: string): OffloadRegion {
    if (this.closed) throw new DSConfigError(`nvme tier ${this.path} is closed`);
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new DSConfigError(`nvme tier: cannot allocate ${bytes} B for ${label}`);
    const at = this.extents.place(bytes);
    const newEnd = Math.max(this.extents.end, at.start + at.size);
    const grow = newEnd - this.extents.end;
    if (grow > 0) {
      const free = freeBytes(this.dir);
      const tooSmall = (why: string) =>
        new DSConfigError(
          `${this.key} ${this.dir} is too small: ${label} needs ${alignUp(bytes)} B more (this rank's swap file would hold ${newEnd} B) but ${free} B are free${why}; ` +
            "free space there, point nvme_path at a larger disk, or offload to 'cpu'",
        );
      if (grow > free) throw tooSmall('');
      try {
        this.io.reserve(this.file, newEnd);
      } catch (e) {
        if (isDSIOError(e) && e.failure.errno === 28) throw tooSmall(' (fallocate: ENOSPC)');
        throw e;
      }
    }
    const region = this.extents.take(bytes, label);
    this.st.regions++;
    this.st.bytesReserved += bytes;
    return region;
  }

  private track(w: OffloadWork): OffloadWork {
    this.pending.add(w);
    if (this.pending.size > 64) for (const p of this.pending) if (p.isCompleted()) this.pending.delete(p);
    return w;
  }

  swapOut(region: OffloadRegion, offset: number, src: Uint8Array): OffloadWork {
    const e = this.extents.extent(region, offset, src.byteLength, 'swapOut');
    this.st.swapOuts++;
    this.st.bytesWritten += src.byteLength;
    return this.track(this.io.write(this.file, src, e.start + offset));
  }

  swapIn(region: OffloadRegion, offset: number, dst: Uint8Array): OffloadWork {
    const e = this.extents.extent(region, offset, dst.byteLength, 'swapIn');
    this.st.swapIns++;
    this.st.bytesRead += dst.byteLength;
    return this.track(this.io.read(this.file, dst, e.start + offset));
  }

  free(region: OffloadRegion): void {
    this.extents.release(region);
    this.st.regions--;
    this.st.bytesReserved -= region.bytes;
  }

  /** Page-aligned host memory: O_DIRECT transfers from it skip the engine's bounce copy. */
  stagingBuffer(bytes: number): ArrayBuffer {
    return allocAligned(bytes).buffer as ArrayBuffer;
  }

  describe(): string {
    return `${this.path} (nvme tier, ${this.io.backend}${this.file.direct ? ', O_DIRECT' : ''})`;
  }

  stats(): OffloadStats {
    return { ...this.st };
  }

  private removeFile(): void {
    try {
      unlinkSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  /** Waits for the swaps in flight, closes the engine and removes the swap file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const errors: unknown[] = [];
    for (const w of this.pending) await w.wait().catch((e: unknown) => errors.push(e));
    this.pending.clear();
    this.io.closeFile(this.file);
    this.io.close();
    this.removeFile();
    process.removeListener('exit', this.onExit);
    if (errors.length > 0) throw errors[0];
  }
}
