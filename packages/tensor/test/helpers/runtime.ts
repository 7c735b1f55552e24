import { createReferenceKernels } from '../../src/reference/index.js';
import { Runtime, withRuntime } from '../../src/runtime.js';

/** Runs fn in a fresh runtime on the reference kernels (its own tracker, no budget). */
export function inReference<T>(fn: (rt: Runtime) => T, opts: { memoryLimit?: number } = {}): T {
  const rt = new Runtime({ kernels: createReferenceKernels(), memoryLimit: opts.memoryLimit });
  return withRuntime(rt, () => fn(rt));
}
