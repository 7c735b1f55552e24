// Where offload_param puts each unit's 16-bit block (src/param-offload.ts), checked against tiers
// that record what they are given: with device 'nvme', a unit whose block has more elements than
// buffer_size is not swappable and stays in host memory (DeepSpeed's rule), units in order that fit
// max_in_cpu stay there too, the rest go to the swap file; with 'cpu' every block is in host memory.
import { describe, expect, it } from 'vitest';

import { createRegistry, type OffloadRegion, type OffloadTier, type PartitionPlan, type Plugin, type StateManagerArgs } from '@ds/core';

import { zeroConfigOf } from '../src/config.js';
import { ParamShardOffload } from '../src/param-offload.js';

interface Placed {
  tier: string;
  label: string;
  bytes: number;
}

/** A tier named `name` keeping regions in memory and recording each allocation and each write. */
function recordingTier(name: string, placed: Placed[], writes: string[]): OffloadTier {
  const store = new Map<number, Uint8Array>();
  let next = 0;
  const done = { wait: async () => {}, waitSync: () => {}, isCompleted: () => true };
  return {
    name,
    allocate(bytes, label) {
      placed.push({ tier: name, label, bytes });
      const region: OffloadRegion = { tier: name, id: next++, bytes, label };
      store.set(region.id, new Uint8Array(bytes));
      return region;
    },
    swapOut(r, offset, src) {
      writes.push(`${name}: ${r.label}`);
      store.get(r.id)!.set(src, offset);
      return done;
    },
    swapIn(r, offset, dst) {
      dst.set(store.get(r.id)!.subarray(offset, offset + dst.byteLength));
      return done;
    },
    free: (r) => void store.delete(r.id),
    describe: () => `${name} (recording)`,
    stats: () => ({ regions: store.size, bytesReserved: 0, bytesWritten: 0, bytesRead: 0, swapOuts: 0, swapIns: 0 }),
    close: async () => {},
  };
}

function setup(param: Record<string, unknown>, blocks: number[]) {
  const placed: Placed[] = [];
  const writes: string[] = [];
  const logs: string[] = [];
  const plugin: Plugin = {
    name: 'recording-tiers',
    package: 'test',
    contributes: { offloadTiers: { cpu: () => recordingTier('cpu', placed, writes), nvme: () => recordingTier('nvme', placed, writes) } },
  };
  const registry = createRegistry([plugin]);
  const config = { zero_optimization: { stage: 3, offload_optimizer: { device: param.device }, offload_param: param } };
  const args = {
    paramDtype: 'bf16',
    group: null,
    config,
    io: { device: 'cpu' },
    ctx: { registry, log: (_level: string, m: string) => logs.push(m) },
  } as unknown as StateManagerArgs;
  // Only the block sizes of the units matter for where they go.
  const plan = { units: blocks.map((block) => ({ block })) } as unknown as PartitionPlan;
  return { run: () => ParamShardOffload.create(args, zeroConfigOf(config), plan), placed, writes, logs };
}

const where = (placed: Placed[]) => placed.map((p) => `${/unit (\d+)/.exec(p.label)![1]}:${p.tier}`);

describe('offload_param placement of unit blocks', () => {
  // Unit blocks of 100, 5000, 800 and 1200 elements (16-bit: 2 bytes each).
  const blocks = [100, 5000, 800, 1200];

  it("nvme: units larger than buffer_size stay in host memory even with max_in_cpu 0", async () => {
    const s = setup({ device: 'nvme', nvme_path: '/unused', max_in_cpu: 0, buffer_size: 1000 }, blocks);
    const off = (await s.run())!;
    expect(where(s.placed)).toEqual(['0:nvme', '1:cpu', '2:nvme', '3:cpu']);
    expect(s.placed.map((p) => p.bytes)).toEqual(blocks.map((b) => 2 * b));
    expect(off.summary).toMatch(/\(2 of 4 unit\(s\) kept in host memory: max_in_cpu 0, buffer_size 1000\)/);
    // Reads and writes of a unit go to the tier its region is in.
    const words = Uint16Array.from({ length: 5000 }, (_, i) => i);
    off.write(1, words).waitSync();
    off.write(2, words.subarray(0, 800)).waitSync();
    expect(s.writes).toEqual(['cpu: rank 0 unit 1 16-bit parameter block', 'nvme: rank 0 unit 2 16-bit parameter block']);
    const back = new Uint16Array(5000);
    off.read(1, back).waitSync();
    expect(back).toEqual(words);
  });

  it('nvme: max_in_cpu counts only swappable units, in order', async () => {
    // Unit 0 fits max_in_cpu (100 of 150); unit 1 is over buffer_size (host, not counted); unit 2 would pass 150.
    const s = setup({ device: 'nvme', nvme_path: '/unused', max_in_cpu: 150, buffer_size: 1000 }, blocks);
    await s.run();
    expect(where(s.placed)).toEqual(['0:cpu', '1:cpu', '2:nvme', '3:cpu']);
  });

  it('nvme: with every unit within buffer_size and max_in_cpu 0, nothing is in host memory and no host tier is made', async () => {
    const s = setup({ device: 'nvme', nvme_path: '/unused', max_in_cpu: 0, buffer_size: 5000 }, blocks);
    const off = (await s.run())!;
    expect(where(s.placed)).toEqual(['0:nvme', '1:nvme', '2:nvme', '3:nvme']);
    expect(off.summary).not.toMatch(/host memory/);
  });

  it('cpu: every block is in host memory whatever buffer_size says', async () => {
    const s = setup({ device: 'cpu', buffer_size: 10 }, blocks);
    await s.run();
    expect(where(s.placed)).toEqual(['0:cpu', '1:cpu', '2:cpu', '3:cpu']);
  });
});
