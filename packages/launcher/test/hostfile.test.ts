import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeWorldInfo, encodeWorldInfo, parseHostfile, parseInclusionExclusion, parseNodeConfigList,
  parseResourceFilter, readHostfile,
} from '../src/hostfile.js';
import { cleanupTempDirs, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const entries = (m: Map<string, unknown>) => [...m.entries()];

describe('parseHostfile', () => {
  it('reads host slots=N lines in order, skipping comments and blank lines', () => {
    const pool = parseHostfile('# cluster\nworker-0 slots=4\n\n  worker-1   slots=2  # trailing words are allowed\n#worker-2 slots=8\n');
    expect(entries(pool)).toEqual([['worker-0', 4], ['worker-1', 2]]);
  });

  it('rejects a malformed line, naming file, line and the expected shape', () => {
    expect(() => parseHostfile('worker-0 slots=4\nworker-1 4\n', 'hf')).toThrow(
      /Hostfile hf line 2 is a bad entry: 'worker-1 4'.*'<host> slots=<N>'/,
    );
    expect(() => parseHostfile('worker-0 slots=x\n')).toThrow(/bad entry/);
    expect(() => parseHostfile('worker-0\n')).toThrow(/bad entry/);
  });

  it('rejects a duplicate host', () => {
    expect(() => parseHostfile('a slots=1\nb slots=1\na slots=2\n', 'hf')).toThrow(/line 3 lists host 'a' a second time/);
  });

  it('rejects an empty file and a file of only comments', () => {
    expect(() => parseHostfile('', 'hf')).toThrow(/Hostfile hf is empty or not formatted correctly/);
    expect(() => parseHostfile('# nothing\n\n')).toThrow(/empty or not formatted correctly/);
  });

  it('readHostfile: missing file is null, a directory is an error, a file is parsed', () => {
    const dir = tempDir();
    expect(readHostfile(join(dir, 'nope'))).toBeNull();
    mkdirSync(join(dir, 'sub'));
    expect(() => readHostfile(join(dir, 'sub'))).toThrow(/not a regular file/);
    writeFileSync(join(dir, 'hf'), 'h1 slots=2\n');
    expect(entries(readHostfile(join(dir, 'hf'))!)).toEqual([['h1', 2]]);
  });
});

describe('parseNodeConfigList', () => {
  it('parses NAME[:SLOT,...]@... merging repeats into sorted unique slots', () => {
    expect(entries(parseNodeConfigList('worker-0@worker-1:2,0@worker-1:2,3'))).toEqual([
      ['worker-0', []],
      ['worker-1', [0, 2, 3]],
    ]);
  });

  it('rejects empty names, bad slots and extra colons', () => {
    expect(() => parseNodeConfigList('a@@b')).toThrow(/'' is not a node spec/);
    expect(() => parseNodeConfigList('a:x', '--exclude')).toThrow(/--exclude 'a:x': slot 'x' is not a non-negative integer/);
    expect(() => parseNodeConfigList('a:1:2')).toThrow(/not a node spec/);
    expect(() => parseNodeConfigList('a:-1')).toThrow(/not a non-negative integer/);
  });
});

describe('include / exclude', () => {
  const pool = parseHostfile('worker-0 slots=4\nworker-1 slots=4\nworker-2 slots=2\n');

  it('no filter keeps everything', () => {
    expect(entries(parseInclusionExclusion(pool))).toEqual([
      ['worker-0', [0, 1, 2, 3]], ['worker-1', [0, 1, 2, 3]], ['worker-2', [0, 1]],
    ]);
  });

  it('include: whole hosts and chosen slots, in hostfile order', () => {
    expect(entries(parseInclusionExclusion(pool, 'worker-1:0,2@worker-0'))).toEqual([
      ['worker-0', [0, 1, 2, 3]], ['worker-1', [0, 2]],
    ]);
  });

  it('exclude: slots and whole hosts; a host left without slots is dropped', () => {
    expect(entries(parseInclusionExclusion(pool, '', 'worker-1:0@worker-2'))).toEqual([
      ['worker-0', [0, 1, 2, 3]], ['worker-1', [1, 2, 3]],
    ]);
    expect(entries(parseInclusionExclusion(pool, '', 'worker-2:0,1'))).toEqual([
      ['worker-0', [0, 1, 2, 3]], ['worker-1', [0, 1, 2, 3]],
    ]);
  });

  it('include and exclude together are an error', () => {
    expect(() => parseInclusionExclusion(pool, 'worker-0', 'worker-1')).toThrow(/mutually exclusive/);
  });

  it('an unknown host is an error for include and exclude', () => {
    expect(() => parseInclusionExclusion(pool, 'worker-9')).toThrow(/--include: hostname 'worker-9' not found in the hostfile/);
    expect(() => parseInclusionExclusion(pool, '', 'worker-9:0')).toThrow(/--exclude: hostname 'worker-9' not found/);
  });

  it('an unknown slot is an error for include and exclude', () => {
    expect(() => parseInclusionExclusion(pool, 'worker-2:5')).toThrow(/--include: no slot '5' on host 'worker-2' \(its slots: 0,1\)/);
    expect(() => parseInclusionExclusion(pool, '', 'worker-2:2')).toThrow(/--exclude: no slot '2' on host 'worker-2'/);
  });

  it('parseResourceFilter works on explicit slot lists (CUDA_VISIBLE_DEVICES style)', () => {
    const active = new Map([['localhost', [2, 3, 5]]]);
    expect(entries(parseResourceFilter(active, '', 'localhost:3'))).toEqual([['localhost', [2, 5]]]);
  });
});

describe('world info encoding', () => {
  it('round-trips as URL-safe base64 JSON, like DeepSpeed', () => {
    const active = new Map([['worker-0', [0, 1]], ['worker-1', [3]]]);
    const encoded = encodeWorldInfo(active);
    expect(encoded).not.toMatch(/[+/=]/);
    expect(JSON.parse(Buffer.from(encoded, 'base64url').toString())).toEqual({ 'worker-0': [0, 1], 'worker-1': [3] });
    expect(entries(decodeWorldInfo(encoded))).toEqual(entries(active));
  });

  it('rejects garbage', () => {
    expect(() => decodeWorldInfo('!!!')).toThrow(/not base64url-encoded JSON/);
    expect(() => decodeWorldInfo(Buffer.from('{"a":[-1]}').toString('base64url'))).toThrow(/must encode/);
  });
});
