// @ds/core's errors; all extend DSError from @ds/tensor, so one `isDSError` recognises every one.
// DSConfigError is @ds/tensor's (it reads environment variables too), re-exported from here.
import { DSError, type DSErrorOptions } from '@ds/tensor';

export { DSConfigError } from '@ds/tensor';
export type { ConfigProblem } from '@ds/tensor';

/** A collective or point-to-point operation failed (peer gone, mismatched sizes, ...). */
export class DSCommError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_COMM', ...options });
  }
}

/** A collective or rendezvous did not complete in time; names the op, group and missing ranks. */
export class DSTimeoutError extends DSCommError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_COMM_TIMEOUT', ...options });
  }
}

/** A checkpoint could not be written, found or read. */
export class DSCheckpointError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_CHECKPOINT', ...options });
  }
}

/** A plugin is missing, or two plugins claim the same extension point. */
export class DSPluginError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_PLUGIN', ...options });
  }
}
