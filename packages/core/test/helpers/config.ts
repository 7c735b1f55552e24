// Shared by the tests that expect a typed error: what fn threw, checked to be an instance of `type`.
import { expect } from 'vitest';

import { DSConfigError } from '../../src/errors.js';

export function thrown<E extends Error>(fn: () => unknown, type: new (...args: never[]) => E): E {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  throw new Error(`expected a ${type.name}`);
}

/** The problems of the DSConfigError that fn must throw. */
export function problemsOf(fn: () => unknown): DSConfigError['problems'] {
  return thrown(fn, DSConfigError).problems;
}
