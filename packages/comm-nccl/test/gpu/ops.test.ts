// On a machine with an NVIDIA GPU and NCCL (skipped elsewhere, with the reason printed): every op x
// dtype on the nccl backend equal to core's cpu backend, in a world of one and of several processes,
// and the watchdog on a rank that never joins.
//
// Several processes on one GPU: NCCL refuses two ranks of one communicator on the same GPU of one host
// ("Duplicate GPU detected", ncclInvalidUsage). Where there are fewer GPUs than ranks, each rank says
// it is its own host (NCCL_HOSTID) and the ranks talk over sockets on loopback, which NCCL then allows;
// with one GPU per rank nothing is changed.
import { describeWorld, lastJson, withWorld } from '@ds-internal/test-kit';
import { describe, expect, it } from 'vitest';

import { ncclStatus } from '../../src/index.js';

const status = ncclStatus();
if (!status.available) console.log(`[comm-nccl] skipping the GPU tests: ${status.reason}`);
else console.log(`[comm-nccl] NCCL ${status.version} (${status.library}), CUDA runtime ${status.cudaRuntimeVersion}, ${status.devices} GPU(s)`);
const OPS = new URL('./workers/ops.ts', import.meta.url);

/** Per-rank settings that let several ranks share a GPU (see the file comment); none with a GPU each. */
const shareGpu = (n: number) => (rank: number): Record<string, string> =>
  n <= status.devices ? {} : { NCCL_HOSTID: `ds-test-host-${rank}`, NCCL_SOCKET_IFNAME: 'lo', NCCL_SHM_DISABLE: '1', NCCL_P2P_DISABLE: '1', NCCL_IB_DISABLE: '1', NCCL_NET: 'Socket' };

interface Report {
  rank: number;
  size: number;
  checked: number;
  mismatches: string[];
  subgroup: string;
}

describe.skipIf(!status.available)('nccl backend on a GPU', () => {
  it.each([1, 2, 3])('every op x dtype on %i rank(s) equals the cpu backend', async (n) => {
    const w = await withWorld(n, OPS, { timeoutMs: 240_000, env: shareGpu(n) });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    for (const r of w.ranks) {
      expect(r.code, describeWorld(w)).toBe(0);
      const rep = lastJson<Report>(r.stdout);
      expect(rep.mismatches, `rank ${r.rank}`).toEqual([]);
      // Buffers compared: per float dtype 4 reduce ops x (allReduce 1 + reduceScatter 2) + allGather 2 +
      // broadcast 1 + allToAll 2 + in-place allToAll 1 = 18, per integer dtype 15; 3 async allReduces;
      // with peers, a send/recv ring per dtype (2) and a subgroup allReduce (1).
      expect(rep.checked).toBe(n === 1 ? 87 : 98);
      expect(rep.subgroup).toBe(n === 1 ? 'skipped' : `group[${Array.from({ length: n }, (_, q) => n - 1 - q).join(',')}] rank ${n - 1 - r.rank} of ${n}`);
    }
  }, 300_000);

  it('a rank that never joins an allReduce: the others time out naming op, group, seq and that rank, and exit', async () => {
    const w = await withWorld(2, OPS, { args: ['timeout'], timeoutMs: 120_000, env: shareGpu(2) });
    expect(w.timedOut, describeWorld(w)).toBe(false);
    const rep = lastJson<{ timedOut: boolean; error: string }>(w.ranks[0]!.stdout);
    expect(rep.timedOut, describeWorld(w)).toBe(true);
    expect(rep.error).toMatch(/^allReduce on group 'world' \(nccl, seq 0, rank 0 of 2, global ranks \[0, 1\]\): timed out after 3000 ms: .*ncclCommAbort.*; group rank\(s\) 1 \(global 1\) never reached this op; raise DS_COMM_TIMEOUT/);
    for (const r of w.ranks) expect(r.code, describeWorld(w)).toBe(0);
  }, 180_000);
});
