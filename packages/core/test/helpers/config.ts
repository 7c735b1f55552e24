// Shared by the config tests: the problems of the DSConfigError that fn must throw.
import { expect } from 'vitest';

import { DSConfigError } from '../../src/errors.js';

export function problemsOf(fn: () => unknown): DSConfigError['problems'] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DSConfigError);
    return (err as DSConfigError).problems;
  }
  throw new Error('expected a DSConfigError');
}
