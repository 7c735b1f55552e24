import { describe, expect, it } from 'vitest';

import { levenshtein, nearest } from '../../src/config/index.js';

describe('levenshtein', () => {
  it('counts insertions, deletions and substitutions', () => {
    expect(levenshtein('', 'abc')).toBe(3);
    expect(levenshtein('kitten', 'sitting')).toBe(3);
    expect(levenshtein('hysterisis', 'hysteresis')).toBe(1);
    expect(levenshtein('flaw', 'lawn')).toBe(2);
    expect(levenshtein('same', 'same')).toBe(0);
  });

  it('suggests the nearest plausible key, preferring a shared prefix on ties', () => {
    expect(nearest('bp16', ['fp16', 'bf16', 'amp'])).toBe('bf16');
    expect(nearest('Adamm', ['Adam', 'AdamW', 'SGD'])).toBe('Adam');
    expect(nearest('zero_optimisation', ['zero_optimization', 'optimizer'])).toBe('zero_optimization');
    expect(nearest('completely_different', ['fp16', 'bf16'])).toBeUndefined();
  });
});
