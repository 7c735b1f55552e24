// Waiting for a collective from synchronous code (autograd hooks, module hooks).
//
// A Work's promise settles on the JS event loop, which never runs while backward or a forward hook
// is on the stack, so a hook cannot await it. Some code has to wait there: ZeRO-3 needs a module's
// parameters before its forward runs, and the gradient reduction must see a bucket's reduction
// finish before the bucket buffer is reused. `Work.waitSync` blocks the thread until the comm backend reports
// the op over (and throws its DSCommError / DSTimeoutError). Groups whose ops only complete on the
// event loop (core's hierarchical allReduce, the in-process fake) cannot do that; the caller then
// fails with the backend and the op named, instead of blocking forever.
import { DSUnsupportedError, isDSError } from '@ds/tensor';

import type { ProcessGroup, Work } from './types.js';

/**
 * Blocks until `work` (started on `group`) is over on this rank; `what` names the op for errors.
 * An op that failed or timed out throws its own error.
 */
export function waitSync(work: Work, group: ProcessGroup, what: string): void {
  const unsupported = (cause?: unknown) =>
    new DSUnsupportedError(
      `${what} (${work.op}, seq ${work.seq}) must be waited for inside a hook, but group '${group.name}' on the '${group.backend}' backend cannot block on it (its ${work.op} completes only on the event loop); use a backend that can (cpu, nccl), and on a group spanning several hosts set zero_optimization.reduce_scatter to true (the multi-host allReduce is event-loop only)`,
      cause === undefined ? {} : { cause },
    );
  if (!work.waitSync) throw unsupported();
  try {
    work.waitSync();
  } catch (err) {
    if (isDSError(err) && err.code === 'DS_UNSUPPORTED') throw unsupported(err);
    throw err;
  }
}
