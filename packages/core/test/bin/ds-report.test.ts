import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { findLibraries } from '../../src/bin/ds-report.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ds-report library search', () => {
  it('finds versioned and plain .so files in the given directories, then in ldconfig -p output', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    mkdirSync(a);
    mkdirSync(b);
    writeFileSync(join(a, 'libcudart.so.12'), '');
    writeFileSync(join(b, 'libcudart.so'), '');
    writeFileSync(join(b, 'libcublasLt.so.12.4'), '');
    writeFileSync(join(b, 'libcublas_fake.so'), '');
    const ldconfig = '\tlibnccl.so.2 (libc6,x86-64) => /opt/nccl/lib/libnccl.so.2\n\tlibc.so.6 (libc6,x86-64) => /lib/libc.so.6\n';
    expect(findLibraries({ dirs: [join(dir, 'missing'), a, b], ldconfig })).toEqual({
      libcudart: join(a, 'libcudart.so.12'),
      libcublas: null,
      libcublasLt: join(b, 'libcublasLt.so.12.4'),
      libnccl: '/opt/nccl/lib/libnccl.so.2',
    });
  });
});

describe('ds-report (process)', () => {
  it('prints versions, cpu, backends, plugins and libraries, and exits 0', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/bin/ds-report.ts', '--json'], { cwd: join(import.meta.dirname, '..', '..'), encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(report)).toEqual(['versions', 'cpu', 'threads', 'commBackends', 'plugins', 'cuda', 'libraries']);
    // Which cuda binary loaded and why it can or cannot run: here (no GPU, no driver) a reason.
    const cuda = report.cuda as { available: boolean; reason: string | null };
    if (!cuda.available) expect(cuda.reason).toMatch(/\w+/);
    else expect(cuda.reason).toBeNull();
    expect((report.versions as Record<string, string>).node).toBe(process.versions.node);
    expect(report.commBackends).toContain('cpu');
    expect(Object.keys(report.libraries as object)).toEqual(['libcudart', 'libcublas', 'libcublasLt', 'libnccl']);
    const cpu = report.cpu as Record<string, unknown>;
    expect('isa' in cpu || 'error' in cpu).toBe(true);
  });
});
