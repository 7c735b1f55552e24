// The one byte-size parser (src/bytes.ts) that environment variables and flags of every package use.
import { describe, expect, it } from 'vitest';

import { formatByteSize, parseByteSize } from '../src/bytes.js';
import { DSConfigError, isDSError } from '../src/errors.js';

const KiB = 1024;
const MiB = KiB ** 2;
const GiB = KiB ** 3;

describe('parseByteSize', () => {
  it('takes bytes as a number or a string, with exponents', () => {
    expect(parseByteSize(4096)).toBe(4096);
    expect(parseByteSize('1048576')).toBe(MiB);
    expect(parseByteSize('1e9')).toBe(1e9);
    expect(parseByteSize(' 2.5e3 B ')).toBe(2500);
    expect(parseByteSize('0')).toBe(0);
  });

  it('reads K, M, G, T as powers of 1024, with or without i and B, in any case', () => {
    for (const s of ['64m', '64M', '64MB', '64MiB', '64mib', '64 MiB']) expect(parseByteSize(s), s).toBe(64 * MiB);
    expect(parseByteSize('2GB')).toBe(2 * GiB);
    expect(parseByteSize('256k')).toBe(256 * KiB);
    expect(parseByteSize('1t')).toBe(KiB ** 4);
    expect(parseByteSize('1.5k')).toBe(1536);
    expect(parseByteSize('0.3k')).toBe(307); // a fraction of a byte is rounded down
  });

  it('rejects anything else with a DSConfigError naming the setting and the accepted forms', () => {
    for (const bad of ['', 'lots', '-1', '1x', '1 ib', 'MiB', '1e', '1k2', '1e16', -5, NaN, Infinity]) {
      let err: unknown;
      try {
        parseByteSize(bad, 'DS_MEMORY_LIMIT');
      } catch (e) {
        err = e;
      }
      expect(err, String(bad)).toBeInstanceOf(DSConfigError);
      expect(isDSError(err) && err.code).toBe('DS_CONFIG');
      expect((err as DSConfigError).message).toContain(`DS_MEMORY_LIMIT='${bad}' is not a byte size`);
      expect((err as DSConfigError).message).toMatch(/e\.g\. 1048576, 1e9, 256k, 64MiB, 2G/);
      expect((err as DSConfigError).problems).toEqual([{ path: 'DS_MEMORY_LIMIT', message: 'not a byte size', value: bad }]);
    }
  });
});

describe('formatByteSize', () => {
  it('writes the largest exact binary unit and round-trips through parseByteSize', () => {
    expect([1024, 1536, 64 * MiB, 2 * GiB, KiB ** 4, 7].map(formatByteSize)).toEqual(['1KiB', '1536B', '64MiB', '2GiB', '1TiB', '7B']);
    for (const n of [0, 1, 1024, 3 * MiB, 5 * GiB]) expect(parseByteSize(formatByteSize(n))).toBe(n);
  });
});
