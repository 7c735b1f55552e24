// The cpu backend's point-to-point fast paths (eager sends, blocking receives on the calling
// thread) keep every message whole and in order: test/comm/workers/p2p-fast.ts. Their failures
// (mismatched lengths, a sender that never sends) are in faults.test.ts.
import { describe, expect, it } from 'vitest';

import { describeWorld, withWorld } from '@ds-internal/test-kit';

describe('send/recv fast paths in real processes', () => {
  it('eager sends and blocking receives, interleaved with queued ones, every size class, both directions', async () => {
    const w = await withWorld(2, new URL('./workers/p2p-fast.ts', import.meta.url), { timeoutMs: 60_000 });
    const dump = describeWorld(w);
    expect(w.timedOut, dump).toBe(false);
    for (const r of w.ranks) expect(r.code, dump).toBe(0);
    const out = w.ranks[1]!.stdout;
    for (const dir of ['0->1', '1->0']) {
      expect(out, dump).toContain(`ok ${dir} 24 messages, sends in flight, blocking and queued receives interleaved`);
      expect(out, dump).toContain(`ok ${dir} blocking recv on an idle channel is complete on return`);
    }
    expect(out, dump).toContain('ok ping-pong of 50 with blocking receives, then a collective');
  }, 90_000);
});
