import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { DSConfigError } from '@ds/core';

import { main, parseCount } from '../src/cli.js';
import { estimateZero2, estimateZero3, modelStateBytes } from '../src/estimate.js';

describe('modelStateBytes', () => {
  it("reproduces the ZeRO paper's example: 7.5B params on 64 ranks -> 120 / 31.4 / 16.6 / 1.9 GB", () => {
    const gb = ([0, 1, 2, 3] as const).map((s) => Math.round(modelStateBytes(s, 7.5e9, 64) / 1e8) / 10);
    expect(gb).toEqual([120, 31.4, 16.6, 1.9]);
  });

  it('is 16 bytes per parameter on one rank at every stage', () => {
    for (const s of [0, 1, 2, 3] as const) expect(modelStateBytes(s, 1000, 1)).toBe(16_000);
  });

  it('rejects a non-integer rank count', () => {
    expect(() => modelStateBytes(1, 10, 0)).toThrow(DSConfigError);
    expect(() => modelStateBytes(1, 10, 0)).toThrow(/ranks must be a positive integer/);
  });
});

describe("DeepSpeed's estimators", () => {
  const input = { totalParams: 1e9, largestLayerParams: 1e8, gpusPerNode: 8, nodes: 2, bufferFactor: 1.5 };

  it('ZeRO-2 counts 2 bytes of 16-bit params plus 18/N of the rest per GPU', () => {
    const [cpu, none] = estimateZero2(input);
    expect(cpu).toEqual({ options: 'offload_optimizer=cpu', perGpuBytes: 2e9, perCpuBytes: 1e9 * 64 * 1.5 });
    expect(none).toEqual({ options: 'offload_optimizer=none', perGpuBytes: 2e9 + Math.floor(18e9 / 16), perCpuBytes: 1e9 * 4 * 8 * 1.5 });
  });

  it('ZeRO-3 has six rows: offload_param x offload_optimizer x zero_init', () => {
    const rows = estimateZero3(input);
    expect(rows).toHaveLength(6);
    expect(rows[0]!.perGpuBytes).toBe(4e8);
    expect(rows[0]!.perCpuBytes).toBe(1e9 * 9 * 1.5); // 18 / nodes
    expect(rows[1]!.perCpuBytes).toBe(1e9 * 32 * 1.5); // max(4 * gpn, 18 / nodes)
    expect(rows[2]!.perGpuBytes).toBe(4e8 + 2e9 / 16);
    expect(rows[4]!.perGpuBytes).toBe(4e8 + Math.floor(18e9 / 16));
    expect(rows[4]!.perCpuBytes).toBe(1e8 * 4 * 8 * 1.5);
    expect(rows[5]!.perCpuBytes).toBe(1e9 * 4 * 8 * 1.5);
  });

  it('validates its inputs', () => {
    expect(() => estimateZero2({ ...input, nodes: 0 })).toThrow(DSConfigError);
    expect(() => estimateZero2({ ...input, nodes: 0 })).toThrow('nodes must be an integer >= 1, got 0 (ds-zero estimate --nodes)');
    expect(() => estimateZero3({ ...input, totalParams: -1 })).toThrow(/totalParams must be a number >= 0/);
  });
});

describe('ds-zero estimate', () => {
  it('parses parameter counts with suffixes', () => {
    expect(parseCount('7.5B')).toBe(7.5e9);
    expect(parseCount('125m')).toBe(125e6);
    expect(parseCount('1e9')).toBe(1e9);
    expect(parseCount('1_000')).toBe(1000);
    expect(parseCount('lots')).toBeNaN();
  });

  it('prints the paper table for 7.5B params on 8 nodes x 8 GPUs', () => {
    const r = main(['estimate', '--params', '7.5B', '--gpus-per-node', '8', '--nodes', '8']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\n {2}0\s+\|\s+120\.0 GB \| 16 Psi\n/);
    expect(r.out).toMatch(/\n {2}1\s+\|\s+31\.41 GB/);
    expect(r.out).toMatch(/\n {2}2\s+\|\s+16\.64 GB/);
    expect(r.out).toMatch(/\n {2}3\s+\|\s+1\.88 GB/);
    expect(r.out).toContain('HW: Setup with 8 nodes, 8 GPUs per node.');
  });

  it('fails with usage on bad arguments, never a stack trace', () => {
    expect(main(['estimate']).code).toBe(2);
    expect(main(['estimate', '--params', 'many']).out).toMatch(/totalParams must be a number/);
    expect(main(['estimate', '--params', '1B', '--frobnicate']).out).toMatch(/unknown argument '--frobnicate'/);
    expect(main(['shard']).out).toMatch(/unknown command 'shard' \(available: estimate, to-fp32\)/);
    expect(main(['to-fp32']).out).toMatch(/expected CHECKPOINT_DIR and OUT.safetensors/);
  });

  it('runs as a bin and emits JSON', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../src/bin/ds-zero.ts'), 'estimate', '--params', '1B', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stages.map((s: { bytesPerRank: number }) => s.bytesPerRank)).toEqual([16e9, 16e9, 16e9, 16e9]);
  });
});
