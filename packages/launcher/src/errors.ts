// The launcher's errors. @ds/launcher imports nothing of the other @ds packages, so it carries
// its own base class; it sets the same Symbol.for('@ds/error') marker as DSError in @ds/tensor, so
// `isDSError` from any @ds package recognises these too.

const MARKER = Symbol.for('@ds/error');

export interface DSLaunchErrorOptions {
  /** Stable machine-readable code; DS_LAUNCH unless a more precise one applies. */
  code?: string;
  cause?: unknown;
}

/** A launch could not be set up: bad flags, a bad hostfile or filter, a missing backend, ... */
export class DSLaunchError extends Error {
  readonly code: string;
  readonly [MARKER] = true;

  constructor(message: string, options: DSLaunchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? 'DS_LAUNCH';
  }
}

/** A DeepSpeed launcher feature that this launcher does not provide (elastic training, autotuning, ...). */
export class DSLaunchUnsupportedError extends DSLaunchError {
  constructor(message: string, options: DSLaunchErrorOptions = {}) {
    super(message, { code: 'DS_UNSUPPORTED', ...options });
  }
}
