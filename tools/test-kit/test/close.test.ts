import { describe, expect, it } from 'vitest';

import { closeReport, expectClose } from '../src/index.js';

describe('expectClose', () => {
  it('passes within atol + rtol * |expected|, element by element', () => {
    expect(() => expectClose([1, 2, 3], Float32Array.of(1, 2.00001, 3), { rtol: 1e-5, atol: 0 })).not.toThrow();
    expect(() => expectClose([1e-9], [0], { rtol: 0, atol: 1e-8 })).not.toThrow();
    expect(() => expectClose([NaN, Infinity, -Infinity], [NaN, Infinity, -Infinity], { rtol: 0, atol: 0 })).not.toThrow();
  });

  it('names the first mismatches and the largest absolute and relative differences', () => {
    let message = '';
    try {
      expectClose([1, 2.5, 3, 0.1], [1, 2, 3.003, 0], { rtol: 1e-3, atol: 1e-6 }, 'weights');
    } catch (err) {
      expect((err as Error).name).toBe('AssertionError');
      message = (err as Error).message;
    }
    expect(message).toMatch(/^weights: 2 of 4 elements differ by more than atol 0\.000001 \+ rtol 0\.001 \* \|expected\|/);
    expect(message).toContain('[1] actual 2.5, expected 2 (|diff| 0.5)');
    expect(message).toContain('[3] actual 0.1, expected 0');
    expect(message).not.toContain('[2]'); // 0.003 <= 1e-6 + 1e-3 * 3.003
    expect(message).toMatch(/max \|diff\| 0\.5 at \[1\], max relative diff Infinity at \[3\]/);
  });

  it('fails on NaN against a number, an infinity of the other sign and a length mismatch', () => {
    expect(closeReport([NaN], [1]).mismatches).toBe(1);
    expect(closeReport([Infinity], [-Infinity]).mismatches).toBe(1);
    expect(() => expectClose([1, 2], [1], {}, 'grads')).toThrow('grads: 2 elements, expected 1');
  });

  it('lists at most 8 mismatches but counts them all', () => {
    const r = closeReport(new Array(20).fill(1), new Array(20).fill(2), { rtol: 0, atol: 0 });
    expect(r.mismatches).toBe(20);
    expect(r.first).toHaveLength(8);
  });
});
