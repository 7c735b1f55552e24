// Which kernel table a device gets by default. The cpu device runs on the native table
// (src/backends/cpu.ts) when its addon loads; the reference table is the fallback, and tests can
// pick either explicitly with `runtime.useKernels(...)`. A cuda backend will register here.

import { DSNativeError, DSUnsupportedError } from '../errors.js';
import type { KernelTable } from '../kernels/table.js';
import { createReferenceKernels } from '../reference/index.js';
import { createCpuKernels } from './cpu.js';

let warned = false;

/**
 * The cpu device's table: the native one, or, when its addon cannot load, the reference table with
 * a process warning (once) that says why. The reference kernels are plain TypeScript loops, 10-1000x
 * slower, so running on them must never go unnoticed.
 */
export function defaultKernels(device: string): KernelTable {
  if (device !== 'cpu') throw new DSUnsupportedError(`no default kernels for device '${device}': only 'cpu' has a kernel table here; pass one with runtime.useKernels(...)`);
  return nativeOrReference(createCpuKernels);
}

/**
 * makeNative()'s table, or the reference one (with the warning) when it throws a DSNativeError. Any
 * other error, such as a bad environment variable, is the user's to fix and is thrown. Exported for
 * tests.
 */
export function nativeOrReference(makeNative: () => KernelTable): KernelTable {
  try {
    return makeNative();
  } catch (err) {
    if (!(err instanceof DSNativeError)) throw err;
    if (!warned) {
      warned = true;
      process.emitWarning(
        `the native cpu kernels could not be loaded, so @ds/tensor runs on its reference kernels (plain TypeScript, 10-1000x slower): ${(err as Error).message}`,
        { code: 'DS_REFERENCE_KERNELS' },
      );
    }
    return createReferenceKernels();
  }
}
