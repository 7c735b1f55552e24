// The ds-bench bin under a 2-rank world: table on rank 0, JSON with nccl-tests' bandwidths.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';

const bin = resolve(import.meta.dirname, '../../src/bin/ds-bench.ts');

describe('ds-bench', () => {
  it('allgather 1K..16K on 2 ranks prints size/time/algbw/busbw and writes JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-bench-'));
    try {
      const json = join(dir, 'out.json');
      const w = await withWorld(2, bin, { args: ['allgather', '--min', '1K', '--max', '16K', '--iters', '3', '--warmup', '1', '--json', json], timeoutMs: 60_000 });
      const dump = describeWorld(w);
      expect(w.ranks.map((r) => r.code), dump).toEqual([0, 0]);
      const out = w.ranks[0]!.stdout;
      expect(out).toMatch(/size\s+count\s+time\(us\)\s+algbw\(GB\/s\)\s+busbw\(GB\/s\)/);
      expect(out).toMatch(/\s1KiB\s/);
      expect(out).toMatch(/\s16KiB\s/);
      expect(w.ranks[1]!.stdout).toBe('');
      const report = JSON.parse(readFileSync(json, 'utf8')) as { op: string; ranks: number; rows: { bytes: number; timeUs: number; algbw: number; busbw: number }[] };
      expect(report.op).toBe('allgather');
      expect(report.rows.map((r) => r.bytes)).toEqual([1024, 2048, 4096, 8192, 16384]);
      for (const r of report.rows) {
        expect(r.timeUs).toBeGreaterThan(0);
        expect(r.algbw).toBeCloseTo(r.bytes / (r.timeUs / 1e6) / 1e9, 6);
        expect(r.busbw).toBeCloseTo(r.algbw * 0.5, 6); // (n-1)/n for n = 2
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 70_000);

  it('--device sim measures the cpu backend through staging copies; --backend names a backend (an unknown one fails by name)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-bench-'));
    try {
      const json = join(dir, 'out.json');
      const w = await withWorld(2, bin, { args: ['allreduce', '--min', '4K', '--max', '8K', '--iters', '2', '--warmup', '1', '--backend', 'cpu', '--device', 'sim', '--json', json], timeoutMs: 60_000 });
      expect(w.ranks.map((r) => r.code), describeWorld(w)).toEqual([0, 0]);
      expect(w.ranks[0]!.stdout).toMatch(/backend cpu, buffers on sim/);
      const report = JSON.parse(readFileSync(json, 'utf8')) as { backend: string; device: string; rows: { bytes: number; device: string; busbw: number }[] };
      expect([report.backend, report.device]).toEqual(['cpu', 'sim']);
      expect(report.rows.map((r) => [r.bytes, r.device])).toEqual([[4096, 'sim'], [8192, 'sim']]);
      for (const r of report.rows) expect(r.busbw).toBeGreaterThan(0);
      const bad = await withWorld(1, bin, { args: ['allreduce', '--backend', 'nosuch'], timeoutMs: 30_000 });
      expect(bad.ranks[0]!.code).toBe(1);
      expect(bad.ranks[0]!.stderr).toMatch(/comm backend 'nosuch' is not registered/);
      const mixed = await withWorld(1, bin, { args: ['allreduce', '--registered', '--device', 'sim'], timeoutMs: 30_000 });
      expect(mixed.ranks[0]!.code).toBe(2);
      expect(mixed.ranks[0]!.stderr).toMatch(/--registered buffers are host shared memory/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('rejects an unknown op with usage and exit code 2', async () => {
    const w = await withWorld(1, bin, { args: ['allfoo'], timeoutMs: 30_000 });
    expect(w.ranks[0]!.code).toBe(2);
    expect(w.ranks[0]!.stderr).toMatch(/unknown op 'allfoo'[\s\S]*usage: ds-bench/);
  }, 40_000);
});
