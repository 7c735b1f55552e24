// The slow-network helper: ranks in their own namespaces reach each other only over the veth links,
// see only their namespace's address, get the per-rank host id and interface address, and every
// namespace is gone afterwards, also when a rank dies (the others are killed, not left waiting).
// Skips with the reason where namespaces cannot be made (not root, no ip/tc).
import { describe, expect, it } from 'vitest';

import { describeWorld, lastJson, leftoverNamespaces, netnsSupport, withNetnsWorld } from '../src/index.js';

const why = netnsSupport();
if (why) console.log(`netns tests skipped: ${why}`);
const worker = new URL('./workers/netns-probe.ts', import.meta.url);

describe.skipIf(why !== null)('withNetnsWorld', () => {
  it('puts each rank in its own namespace behind a rate-limited link, and tears everything down', async () => {
    const w = await withNetnsWorld(3, worker, { rate: '100mbit', timeoutMs: 30_000 });
    expect(w.ranks.map((r) => r.code), describeWorld(w)).toEqual([0, 0, 0]);
    const out = w.ranks.map((r) => lastJson<{ rank: number; addrs: string[]; env: Record<string, string>; got?: string }>(r.stdout));
    out.forEach((o, r) => {
      expect(o.addrs.sort()).toEqual(['10.77.0.' + (r + 1), '127.0.0.1'].sort());
      expect(o.env).toMatchObject({ ifaddr: `10.77.0.${r + 1}`, transport: 'tcp', master: '10.77.0.1', local: '1' });
    });
    expect(new Set(out.map((o) => o.env.host)).size).toBe(3);
    expect(out.slice(1).map((o) => o.got)).toEqual(['hello', 'hello']);
    expect(leftoverNamespaces()).toEqual([]);
  }, 60_000);

  it('ends the world when a rank dies, and tears down', async () => {
    const w = await withNetnsWorld(3, worker, { rate: '1gbit', env: { NETNS_DIE: '1' }, timeoutMs: 30_000 });
    expect(w.timedOut).toBe(false);
    expect(w.ranks[1]!.code).toBe(3);
    expect(w.ranks.filter((r) => r.rank !== 1).map((r) => r.signal)).toEqual(['SIGKILL', 'SIGKILL']);
    expect(leftoverNamespaces()).toEqual([]);
  }, 60_000);
});
