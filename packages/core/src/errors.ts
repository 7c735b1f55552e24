// @ds/core's errors; all extend DSError from @ds/tensor, so one `isDSError` recognises every one.
import { DSError, type DSErrorOptions } from '@ds/tensor';

/** One or more problems in a ds_config; `problems` lists each with its key path. */
export class DSConfigError extends DSError {
  readonly problems: readonly ConfigProblem[];
  constructor(message: string, problems: readonly ConfigProblem[] = [], options: DSErrorOptions = {}) {
    super(message, { code: 'DS_CONFIG', ...options });
    this.problems = problems;
  }
}

export interface ConfigProblem {
  /** Key path, e.g. "zero_optimization.stage". */
  path: string;
  message: string;
  value?: unknown;
  /** For a misspelt key: the nearest valid key. */
  suggestion?: string;
}

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
