import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { formatValue, median, pythonWithTorch, table, writeResults, type Row } from '../src/index.js';

const row = (metric: string, value: number, extra: Partial<Row> = {}): Row => ({
  metric, value, unit: 'GB/s', anchor: 'memcpy', anchorValue: 2, ratio: value / 2, config: {}, ...extra,
});

describe('formatValue', () => {
  it('keeps 4 significant digits, one decimal from 100, an exponent from 1e6', () => {
    expect(formatValue(null)).toBe('-');
    expect(formatValue(1.23456)).toBe('1.235');
    expect(formatValue(123.456)).toBe('123.5');
    expect(formatValue(-250)).toBe('-250.0');
    expect(formatValue(3.4e9)).toBe('3.400e+9');
  });
});

describe('table', () => {
  it('aligns every column and prints the note and a missing anchor', () => {
    const t = table([
      row('copy', 4, { config: { note: '50% of peak' } }),
      row('allreduce_long_name', 1, { anchor: null, anchorValue: null, ratio: null, config: { anchorMissing: 'torch absent' } }),
    ]).split('\n');
    expect(t).toHaveLength(4);
    expect(t[0]).toMatch(/^metric +value +unit +anchor value +ratio \(>1 better\) +anchor +note$/);
    expect(t[2]).toMatch(/^copy +4\.000 +GB\/s +2\.000 +2\.00 +memcpy +50% of peak$/);
    expect(t[3]).toMatch(/^allreduce_long_name +1\.000 +GB\/s +- +- +none: torch absent$/);
    // The value column starts at the same offset on every line.
    const at = t[0]!.indexOf('value');
    expect(t[2]!.slice(at, at + 5)).toBe('4.000');
    expect(t[3]!.slice(at, at + 5)).toBe('1.000');
  });
});

describe('writeResults', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'bench-kit-'));
  const read = (d: string, f: string) => JSON.parse(readFileSync(join(d, f), 'utf8')) as Row[];

  it('a smoke run writes results.smoke.json and leaves results.json alone', () => {
    const d = dir();
    writeResults(d, [row('a', 1)], { smoke: false });
    expect(writeResults(d, [row('a', 9)], { smoke: true })).toMatch(/results\.smoke\.json \(smoke run/);
    expect(read(d, 'results.json').map((r) => r.value)).toEqual([1]);
    expect(read(d, 'results.smoke.json').map((r) => r.value)).toEqual([9]);
  });

  it('a merging run replaces its own metrics and keeps the others in order', () => {
    const d = dir();
    writeResults(d, [row('a', 1), row('b', 2), row('c', 3)], { smoke: false });
    expect(writeResults(d, [row('b', 20)], { smoke: false, merge: true })).toMatch(/1 rows replaced, 2 kept/);
    expect(read(d, 'results.json').map((r) => [r.metric, r.value])).toEqual([['a', 1], ['c', 3], ['b', 20]]);
    writeResults(d, [row('z', 5)], { smoke: false });
    expect(read(d, 'results.json').map((r) => r.metric)).toEqual(['z']);
  });

  it('refuses to merge into a file that is not a list of rows', () => {
    const d = dir();
    writeFileSync(join(d, 'results.json'), '{"rows": []}');
    expect(() => writeResults(d, [row('a', 1)], { smoke: false, merge: true })).toThrow(/does not hold an array of rows/);
  });
});

describe('median', () => {
  it('takes the middle value, the upper one of an even count', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(3);
    expect(() => median([])).toThrow(/no values/);
  });
});

describe('pythonWithTorch', () => {
  it('says why when no candidate imports torch', () => {
    const got = pythonWithTorch(['/nonexistent/python3', 'false']);
    expect(got).toBe('torch is not importable here (/nonexistent/python3 -c "import torch" and false -c "import torch" failed)');
  });

  it('returns the first candidate that imports torch', () => {
    // `true` exits 0 whatever its arguments, so it stands for a python that imports torch.
    expect(pythonWithTorch(['false', 'true', 'python3'])).toEqual({ python: 'true' });
  });
});
