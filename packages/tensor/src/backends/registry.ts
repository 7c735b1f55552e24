// Which kernel table a device gets by default. The cpu device runs on the native table
// (src/backends/cpu.ts) when its addon loads; the reference table is the fallback, and tests can
// pick either explicitly with `runtime.useKernels(...)`. A cuda backend will register here.

import type { KernelTable } from '../kernels/table.js';
import { createReferenceKernels } from '../reference/index.js';
import { createCpuKernels } from './cpu.js';

export type KernelFactory = () => KernelTable;

/** Candidate factories for the cpu device, best first; the first that constructs wins. */
const CPU_FACTORIES: readonly KernelFactory[] = [createCpuKernels, createReferenceKernels];

export function defaultKernels(device: string): KernelTable {
  if (device !== 'cpu') throw new Error(`no default kernels for device '${device}'`);
  for (const make of CPU_FACTORIES) {
    try {
      return make();
    } catch {
      // A native table that cannot load its addon falls through to the next candidate.
    }
  }
  return createReferenceKernels();
}
