// The error family of every @ds/* package. Core and the technique packages subclass DSError.
//
// `isDSError` recognises an error from any copy of this package (two versions installed side by
// side, or a bundled copy) through a Symbol.for marker rather than instanceof.

const MARKER = Symbol.for('@ds/error');

export interface DSErrorOptions {
  /** Stable machine-readable code, e.g. DS_SHAPE_MISMATCH. */
  code?: string;
  cause?: unknown;
}

export class DSError extends Error {
  readonly code: string;
  readonly [MARKER] = true;

  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? 'DS_ERROR';
  }
}

export function isDSError(err: unknown): err is DSError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[MARKER] === true;
}

/** Shapes, dtypes or devices of an op's operands do not fit together. */
export class DSShapeError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_SHAPE_MISMATCH', ...options });
  }
}

/**
 * A bad setting: one or more problems in a ds_config (validated in @ds/core), an environment
 * variable (DS_MEMORY_LIMIT, DS_COMM_TIMEOUT, ...) or an option passed to a constructor. `problems`
 * lists each with its key path. It lives here, at the bottom of the error family, because
 * @ds/tensor reads settings too; @ds/core re-exports it.
 */
export class DSConfigError extends DSError {
  readonly problems: readonly ConfigProblem[];
  constructor(message: string, problems: readonly ConfigProblem[] = [], options: DSErrorOptions = {}) {
    super(message, { code: 'DS_CONFIG', ...options });
    this.problems = problems;
  }
}

export interface ConfigProblem {
  /** Key path, e.g. "zero_optimization.stage", or the environment variable, e.g. "DS_MEMORY_LIMIT". */
  path: string;
  message: string;
  value?: unknown;
  /** For a misspelt key: the nearest valid key. */
  suggestion?: string;
}

/** A feature that exists in DeepSpeed (or in our design) but is not available here. */
export class DSUnsupportedError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_UNSUPPORTED', ...options });
  }
}

/** The native addon could not be loaded, or reported a failure. */
export class DSNativeError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_NATIVE', ...options });
  }
}

/** An allocation would exceed the per-rank memory budget (DS_MEMORY_LIMIT). */
export class DSOutOfMemoryError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_OUT_OF_MEMORY', ...options });
  }
}

/**
 * Device memory reached from JavaScript (data() or a typed view of a sim or cuda tensor), operands
 * on different devices, or a device that cannot be used here. The message names the device and the
 * explicit copy to make.
 */
export class DSDeviceError extends DSError {
  constructor(message: string, options: DSErrorOptions = {}) {
    super(message, { code: 'DS_DEVICE', ...options });
  }
}
