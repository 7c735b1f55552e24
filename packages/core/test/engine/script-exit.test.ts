// A training script ends when it ends (as a Python DeepSpeed script does): without engine.destroy()
// or dist.destroy() every rank exits 0 on its own, rank 0 only after the others have left the store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';

describe('a script that never calls destroy()', () => {
  it('exits 0 on every rank once its work is done', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ds-exit-'));
    try {
      const w = await withWorld(2, new URL('./workers/no-destroy.ts', import.meta.url), { env: { DS_TEST_DIR: dir }, timeoutMs: 40_000 });
      expect(w.timedOut, describeWorld(w)).toBe(false);
      for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
      expect(w.ranks.map((r) => lastJson<{ rank: number }>(r.stdout).rank)).toEqual([0, 1]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
