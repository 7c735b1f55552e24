import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { spawn } from 'node:child_process';

import { ANCHOR_DRIFT, anchorDrift, CONTENDED_FRACTION, contendedRounds, formatValue, isNoisy, machineState, median, preloadEnv, pythonWithTorch, tcmallocPreload, table, writeResults, type MachineState, type Row, type WriteOptions } from '../src/index.js';

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

/** A machine state, by how many of its 2 CPUs others kept busy. */
const state = (busyCpus: number): MachineState => ({ cpuModel: 'test cpu', cpus: 2, loadavg: [busyCpus, busyCpus, busyCpus], busyCpus, at: '2026-01-01T00:00:00.000Z' });
const QUIET = { before: state(0.1), after: state(0.2) };

describe('writeResults', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'bench-kit-'));
  const write = (d: string, rows: Row[], opts: WriteOptions) => writeResults(d, rows, { ...QUIET, ...opts });
  const read = (d: string, f: string) => JSON.parse(readFileSync(join(d, f), 'utf8')) as Row[];

  it('a smoke run writes results.smoke.json and leaves results.json alone', () => {
    const d = dir();
    write(d, [row('a', 1)], { smoke: false });
    expect(write(d, [row('a', 9)], { smoke: true })).toMatch(/results\.smoke\.json \(smoke run/);
    expect(read(d, 'results.json').map((r) => r.value)).toEqual([1]);
    expect(read(d, 'results.smoke.json').map((r) => r.value)).toEqual([9]);
  });

  it('a merging run replaces its own metrics and keeps the others in order', () => {
    const d = dir();
    write(d, [row('a', 1), row('b', 2), row('c', 3)], { smoke: false });
    expect(write(d, [row('b', 20)], { smoke: false, merge: true })).toMatch(/1 rows replaced, 2 kept/);
    expect(read(d, 'results.json').map((r) => [r.metric, r.value])).toEqual([['a', 1], ['c', 3], ['b', 20]]);
    write(d, [row('z', 5)], { smoke: false });
    expect(read(d, 'results.json').map((r) => r.metric)).toEqual(['z']);
  });

  it('a row without its anchor does not replace an anchored row: the run goes to results.anchorless.json', () => {
    const d = dir();
    write(d, [row('a', 1), row('b', 2)], { smoke: false });
    const bare = row('b', 30, { anchor: null, anchorValue: null, ratio: null, config: { anchorMissing: 'torch is not importable here' } });
    expect(write(d, [bare], { smoke: false, merge: true })).toMatch(/^ANCHOR MISSING: b \(torch is not importable here\); .*results\.anchorless\.json: install the anchor and rerun$/);
    expect(read(d, 'results.json').map((r) => [r.metric, r.value])).toEqual([['a', 1], ['b', 2]]);
    expect(read(d, 'results.anchorless.json').map((r) => r.value)).toEqual([30]);
    // Rows whose committed figure has no anchor either (or new metrics) are written as before.
    write(d, [row('c', 4, { anchor: null, anchorValue: null, ratio: null })], { smoke: false, merge: true });
    expect(write(d, [row('c', 5, { anchor: null, anchorValue: null, ratio: null })], { smoke: false, merge: true })).toMatch(/1 rows replaced, 2 kept/);
    expect(read(d, 'results.json').map((r) => [r.metric, r.value])).toEqual([['a', 1], ['b', 2], ['c', 5]]);
  });

  it('records the machine in every row; a noisy run goes to results.noisy.json, marked, and leaves results.json alone', () => {
    const d = dir();
    write(d, [row('a', 1)], { smoke: false });
    expect(read(d, 'results.json')[0]!.config.machine).toMatchObject({ cpuModel: 'test cpu', cpus: 2, before: { busyCpus: 0.1 }, after: { busyCpus: 0.2 } });
    const line = write(d, [row('a', 7)], { smoke: false, after: state(1.2) });
    expect(line).toMatch(/^NOISY run: other work kept 0\.10 then 1\.20 of 2 CPUs busy \(0\.5 per core or more\); wrote .*results\.noisy\.json, results\.json untouched/);
    expect(read(d, 'results.json').map((r) => r.value)).toEqual([1]);
    const noisy = read(d, 'results.noisy.json');
    expect(noisy.map((r) => [r.value, r.config.noisy])).toEqual([[7, true]]);
    expect(table(noisy).split('\n')[2]).toMatch(/NOISY$/);
    // A row the bench marked itself (its anchor drifted) makes the run noisy on a quiet machine too.
    expect(write(d, [row('b', 3, { config: { noisy: true } })], { smoke: false })).toMatch(/^NOISY run: the bench marked b noisy/);
    expect(read(d, 'results.json').map((r) => r.value)).toEqual([1]);
  });

  it('refuses to merge into a file that is not a list of rows', () => {
    const d = dir();
    writeFileSync(join(d, 'results.json'), '{"rows": []}');
    expect(() => write(d, [row('a', 1)], { smoke: false, merge: true })).toThrow(/does not hold an array of rows/);
  });
});

describe('median', () => {
  it('takes the middle value, the upper one of an even count', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(3);
    expect(() => median([])).toThrow(/no values/);
  });
});

describe('anchorDrift', () => {
  it('is the gap between the in-run and standalone anchor as a fraction of the standalone one', () => {
    expect(anchorDrift(90, 100, 'PyTorch', 'tokens/s')).toEqual({ drift: 0.1, reason: null });
    expect(anchorDrift(110, 100, 'PyTorch', 'tokens/s').drift).toBeCloseTo(0.1, 12);
  });
  it('gives the reason that marks a row noisy only above the limit', () => {
    expect(ANCHOR_DRIFT).toBe(0.15);
    expect(anchorDrift(115, 100, 'x', 'u').reason).toBeNull();
    const far = anchorDrift(80, 100, 'OpenBLAS', 'GFLOP/s');
    expect(far.drift).toBeCloseTo(0.2, 12);
    expect(far.reason).toBe('OpenBLAS in the run 80.0 vs alone 100 GFLOP/s (20% apart, above 15%)');
    expect(anchorDrift(2.0e8, 2.81e8, 'foreach AdamW', 'params/s').reason).toMatch(/^foreach AdamW in the run 2\.00e\+8 vs alone 2\.81e\+8 params\/s \(29% apart/);
  });
  it('has nothing to say without both figures', () => {
    expect(anchorDrift(null, 100, 'x', 'u')).toEqual({ drift: null, reason: null });
    expect(anchorDrift(100, null, 'x', 'u')).toEqual({ drift: null, reason: null });
    expect(anchorDrift(100, 0, 'x', 'u')).toEqual({ drift: null, reason: null });
  });
});

describe('contendedRounds', () => {
  it('lists the rounds whose probe fell below the fraction of the peak, and marks the row from minRounds on', () => {
    expect(CONTENDED_FRACTION).toBe(0.9);
    // 90% of 100 is the line: 90 is not below it, 89.9 is; rounds without a probe are skipped.
    expect(contendedRounds([100, 90, 89.9, null, 95], 100, 2, 'its core')).toEqual({ rounds: [2], reason: null });
    const two = contendedRounds([60, 99, 74.5, 101], 100, 2, 'its core');
    expect(two.rounds).toEqual([0, 2]);
    expect(two.reason).toBe("after 2 of 4 rounds its core ran the FMA probe below 90% of one core's peak (60, 75 vs 100 GFLOP/s per core): something else had the CPU time (another process, or the host)");
  });
  it('has nothing to say without a peak', () => {
    expect(contendedRounds([10, 10, 10], null, 1, 'x')).toEqual({ rounds: [], reason: null });
    expect(contendedRounds([10, 10, 10], 0, 1, 'x')).toEqual({ rounds: [], reason: null });
  });
});

describe('tcmallocPreload', () => {
  it('gives an existing TCMalloc library, or says which package to install; glibc when asked', () => {
    const got = tcmallocPreload({}, false);
    if (typeof got === 'string') expect(got).toMatch(/libtcmalloc-minimal4/);
    else {
      expect(got.path).toMatch(/libtcmalloc(_minimal)?\.so\.4$/);
      expect(existsSync(got.path)).toBe(true);
    }
    expect(tcmallocPreload({ DS_BENCH_TORCH_MALLOC: 'default' }, false)).toMatch(/glibc malloc asked for/);
  });
  it('preloads the library ahead of an LD_PRELOAD already set, and nothing without one', () => {
    const before = process.env.LD_PRELOAD;
    try {
      process.env.LD_PRELOAD = '/x/libother.so';
      expect(preloadEnv({ path: '/y/libtcmalloc_minimal.so.4' })).toEqual({ LD_PRELOAD: '/y/libtcmalloc_minimal.so.4:/x/libother.so' });
      delete process.env.LD_PRELOAD;
      expect(preloadEnv({ path: '/y/libtcmalloc_minimal.so.4' })).toEqual({ LD_PRELOAD: '/y/libtcmalloc_minimal.so.4' });
      expect(preloadEnv('no TCMalloc here')).toEqual({});
    } finally {
      if (before === undefined) delete process.env.LD_PRELOAD;
      else process.env.LD_PRELOAD = before;
    }
  });
});

describe('pythonWithTorch', () => {
  it('says why when no candidate imports torch', () => {
    const got = pythonWithTorch(['/nonexistent/python3', 'false']);
    expect(got).toBe('torch is not importable here (/nonexistent/python3 -c "import torch" and false -c "import torch" failed; on Debian: apt-get install python3-torch)');
  });

  it('returns the first candidate that imports torch', () => {
    // `true` exits 0 whatever its arguments, so it stands for a python that imports torch.
    expect(pythonWithTorch(['false', 'true', 'python3'])).toEqual({ python: 'true' });
  });
});

describe('machineState', () => {
  it('sees a busy loop on one core at once (the load average would take a minute)', async () => {
    const quietish = machineState(300);
    expect(quietish.cpus).toBeGreaterThan(0);
    expect(quietish.busyCpus).not.toBeNull();
    const loops = Array.from({ length: quietish.cpus }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    try {
      await new Promise((r) => setTimeout(r, 300));
      const busy = machineState(500);
      // One busy loop per core: every core is busy, far above half of them.
      expect(busy.busyCpus!).toBeGreaterThan(0.8 * busy.cpus);
      expect(isNoisy([busy])).toBe(true);
    } finally {
      for (const l of loops) l.kill('SIGKILL');
    }
  });
});
