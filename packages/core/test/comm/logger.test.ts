import { describe, expect, it } from 'vitest';

import { busFactor, deepspeedBandwidth, ncclBandwidth } from '../../src/comm/bandwidth.js';
import { CommsLogger, formatMsgSize, trimmedMean } from '../../src/comm/logger.js';
import type { CommEvent } from '../../src/comm/types.js';

const event = (over: Partial<CommEvent>): CommEvent => ({ op: 'allReduce', group: 'world', groupSize: 4, seq: 0, dtype: 'f32', bytes: 1 << 20, latencyMs: 2, ok: true, ...over });

describe('bandwidth definitions', () => {
  it('nccl-tests bus factors', () => {
    expect(busFactor('allReduce', 4)).toBe(1.5);
    expect(busFactor('allGather', 4)).toBe(0.75);
    expect(busFactor('reduceScatter', 2)).toBe(0.5);
    expect(busFactor('allToAll', 8)).toBe(7 / 8);
    expect(busFactor('broadcast', 8)).toBe(1);
    const b = ncclBandwidth('allReduce', 2, 64e6, 0.01);
    expect(b.algbw).toBeCloseTo(6.4, 10);
    expect(b.busbw).toBeCloseTo(6.4, 10);
  });

  it("DeepSpeed's comms-logger definitions (Gbps)", () => {
    // all_reduce: algbw counts 2 x size; busbw = size/t x 2(n-1)/n.
    const ar = deepspeedBandwidth('allReduce', 4, 1e6, 1);
    expect(ar.algbw).toBeCloseTo(16, 10);
    expect(ar.busbw).toBeCloseTo(12, 10);
    // all_gather: size x n, busbw x (n-1)/n.
    const ag = deepspeedBandwidth('allGather', 4, 1e6, 1);
    expect(ag.algbw).toBeCloseTo(32, 10);
    expect(ag.busbw).toBeCloseTo(24, 10);
    expect(deepspeedBandwidth('send', 4, 1e6, 1)).toEqual({ algbw: 8, busbw: 8 });
  });
});

describe('CommsLogger', () => {
  it('formats sizes and trims means like DeepSpeed', () => {
    expect(formatMsgSize(6 * 1024 * 1024)).toBe('6.0 MB');
    expect(formatMsgSize(1536)).toBe('1.5 KB');
    expect(formatMsgSize(100)).toBe('100.0 B');
    expect(trimmedMean([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000])).toBeCloseTo(5.5, 10);
  });

  it('records per (op, size), logs verbose lines and prints the summary table', () => {
    const lines: string[] = [];
    const logger = new CommsLogger({ enabled: true, verbose: true }, (l) => lines.push(l));
    logger.record(event({ latencyMs: 1 }));
    logger.record(event({ latencyMs: 3 }));
    logger.record(event({ op: 'allGather', bytes: 1024, latencyMs: 0.5 }));
    logger.record(event({ ok: false }));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^comm op: all_reduce \| time \(ms\): 1\.00 \| msg size: 1\.0 MB \| algbw \(Gbps\): [\d.]+ \| busbw \(Gbps\): [\d.]+$/);
    const s = logger.stats().get('all_reduce')!.get(1 << 20)!;
    expect(s.count).toBe(2);
    expect(s.totalLatencyMs).toBe(4);
    expect(s.avgLatencyMs).toBe(2);
    const table = logger.summary().split('\n');
    expect(table[0]).toMatch(/^Comm\. Op\s+Message Size\s+Count\s+Total Latency\(ms\)\s+Avg Latency\(ms\)\s+tput_avg \(Gbps\)\s+busbw_avg \(Gbps\)$/);
    expect(table).toContain('all_reduce');
    expect(table.find((l) => l.includes('1.0 MB'))).toMatch(/1\.0 MB\s+2\s+4\.00\s+2\.00/);
    expect(table).toContain('all_gather_into_tensor');
  });

  it('honours enabled, prof_all/prof_ops (DeepSpeed or our names) and debug callers', () => {
    const off = new CommsLogger({});
    off.record(event({}));
    expect(off.stats().size).toBe(0);
    const some = CommsLogger.fromConfig({ enabled: true, prof_all: false, prof_ops: ['all_gather_into_tensor', 'broadcast'] });
    some.record(event({}));
    some.record(event({ op: 'allGather' }));
    some.record(event({ op: 'broadcast' }));
    expect([...some.stats().keys()].sort()).toEqual(['all_gather_into_tensor', 'broadcast']);
    const dbg = new CommsLogger({ enabled: true, debug: true });
    dbg.record(event({ caller: 'stepZero' }));
    expect([...dbg.stats().keys()]).toEqual(['all_reduce | [Caller Func: stepZero]']);
  });
});
