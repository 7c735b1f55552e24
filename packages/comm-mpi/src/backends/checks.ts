// Argument checks run before anything crosses into native code: core's (the same rules as its cpu
// backend, so every backend answers bad input alike) plus MPI's own limit on counts.
import { checkBuffer as checkCommBuffer, DSUnsupportedError, type CommBuffer, type CommOpName } from '@ds/core';

export { checkPair, checkRank, checkReduceOp, checkTimeout, DTYPE_CODE, OP_CODE, REDUCE_CODE } from '@ds/core';

/** MPI counts are C ints. */
const MAX_COUNT = 2 ** 31 - 1;

export function checkBuffer(op: CommOpName, what: string, buf: CommBuffer): void {
  checkCommBuffer(op, what, buf);
  if (buf.array.length > MAX_COUNT) throw new DSUnsupportedError(`${op}: ${what} has ${buf.array.length} elements but MPI counts are 32-bit (at most ${MAX_COUNT}); split the buffer`);
}
