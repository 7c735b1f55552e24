import { describe, expect, it } from 'vitest';

import { DSShapeError } from '../src/errors.js';
import { Generator } from '../src/random.js';

describe('Generator', () => {
  it('restores a saved state and replays the same numbers', () => {
    const g = new Generator(7);
    const state = g.getState();
    const first = [g.uniform(), g.uniform()];
    g.setState(state);
    expect([g.uniform(), g.uniform()]).toEqual(first);
  });

  it('rejects a state that is not the 4 words of getState() with a DSShapeError', () => {
    expect(() => new Generator(1).setState([1, 2, 3])).toThrow(DSShapeError);
    expect(() => new Generator(1).setState([1, 2, 3])).toThrow('Generator.setState: expected the 4 state words of getState(), got 3');
  });
});
